"""The server's TOML configuration: values, defaults, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrswarm.errors import UsageError
from ocrswarm.server.auth import Role
from ocrswarm.server.settings import ServerSettings, load_settings

DIGEST = "a" * 64


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "server.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_full_configuration_is_read(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            f"""
[server]
host = "0.0.0.0"
port = 9000
data_dir = "{tmp_path / "data"}"
data_roots = ["{tmp_path}"]
workers = 3
allow = ["10.0.0.0/8", "127.0.0.1"]
trusted_proxies = ["127.0.0.1"]
max_upload_bytes = 1000
max_request_bytes = 100

[[server.tokens]]
name = "ci"
sha256 = "{DIGEST}"
role = "submitter"
""",
        )
    )
    assert (settings.host, settings.port, settings.workers) == ("0.0.0.0", 9000, 3)
    assert settings.roots == (tmp_path,)
    assert settings.database_url == f"sqlite:///{tmp_path / 'data' / 'state.sqlite'}"
    assert settings.tokens[0].role == Role.SUBMITTER
    assert settings.allow == ("10.0.0.0/8", "127.0.0.1")
    assert (settings.max_upload_bytes, settings.max_request_bytes) == (1000, 100)


def test_defaults_without_a_file_and_overrides() -> None:
    settings = load_settings(None).with_overrides(port=1234, host=None)
    assert settings.port == 1234
    assert settings.host == ServerSettings().host
    assert settings.roots == (settings.data_dir,)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[server]\nprot = 1\n", "server.prot"),
        ('[server]\nport = "80"\n', "server.port"),
        ("[server]\nworkers = -1\n", "server.workers"),  # 0: none, with remote workers
        ('[server]\nallow = ["10.0.0.300/8"]\n', "server.allow"),
        ('[server]\ndata_roots = "/srv"\n', "server.data_roots"),
        ('[[server.tokens]]\nname = "x"\nsha256 = "abc"\nrole = "reader"\n', "sha256"),
        (f'[[server.tokens]]\nname = "x"\nsha256 = "{DIGEST}"\nrole = "boss"\n', "role"),
        ('[[server.tokens]]\nname = "x"\nrole = "reader"\n', "sha256: missing"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_a_wrong_setting_is_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(UsageError, match=named.replace("[", r"\[")):
        load_settings(write(tmp_path, text))


def test_a_missing_file_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="cannot read"):
        load_settings(tmp_path / "nope.toml")
