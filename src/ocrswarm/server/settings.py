"""The server's configuration: defaults, a TOML file (`--config`), command-line overrides.

The file holds a `[server]` table (issue 6 adds its own tables beside it):

    [server]
    host = "127.0.0.1"
    port = 8000
    data_dir = "/srv/ocrswarm"
    data_roots = ["/srv/ocrswarm", "/data/scans"]   # where path_to_mets may point
    workers = 2
    allow = ["127.0.0.1/32", "10.0.0.0/8"]
    trusted_proxies = ["127.0.0.1"]
    max_upload_bytes = 2147483648
    max_request_bytes = 1048576

    [[server.tokens]]
    name = "ci"
    sha256 = "…hex digest of the token…"
    role = "submitter"                            # admin, submitter, worker or reader

A wrong key or value is a UsageError that names it. The same file holds the `[queue]`,
`[database]` and `[worker]` tables of a distributed deployment (ocrswarm.config):
`[queue] url` makes the server dispatch page tasks through RabbitMQ, `[database] url`
(or `server.db_url`) names the store.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ocrswarm.config import load_configuration
from ocrswarm.errors import UsageError
from ocrswarm.server.auth import Role

DEFAULT_PORT = 8000
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class TokenEntry:
    """An API token: only its SHA-256 digest is stored."""

    name: str
    sha256: str
    role: Role


@dataclass(frozen=True, slots=True)
class ServerSettings:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    data_dir: Path = field(default_factory=lambda: Path("ocrswarm-data").absolute())
    data_roots: tuple[Path, ...] = ()  # empty: data_dir only
    db_url: str | None = None  # default: SQLite in data_dir
    queue_url: str | None = None  # RabbitMQ: distributed mode (workers anywhere)
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    tokens: tuple[TokenEntry, ...] = ()
    allow: tuple[str, ...] = ()  # CIDRs; empty: everyone
    trusted_proxies: tuple[str, ...] = ()
    max_upload_bytes: int = 2 * 1024**3
    max_request_bytes: int = 1024**2

    @property
    def roots(self) -> tuple[Path, ...]:
        """The directories whose METS files the API may name (absolute)."""
        return self.data_roots or (self.data_dir,)

    @property
    def database_url(self) -> str:
        return self.db_url or f"sqlite:///{self.data_dir.absolute() / 'state.sqlite'}"

    def with_overrides(self, **values: Any) -> ServerSettings:
        """A copy with the given non-None values (from the command line) applied."""
        given = {key: value for key, value in values.items() if value is not None}
        if "data_dir" in given:
            given["data_dir"] = Path(given["data_dir"]).absolute()
        return replace(self, **given)


def load_settings(path: Path | None) -> ServerSettings:
    """The settings of `path` (a TOML file), or the defaults without one."""
    if path is None:
        return ServerSettings()
    configuration = load_configuration(path)
    settings = settings_from_mapping(configuration.server, where=f"{path}: server")
    if configuration.database_url is not None:
        if settings.db_url is not None and settings.db_url != configuration.database_url:
            raise UsageError(f"{path}: server.db_url and database.url differ; keep one")
        settings = replace(settings, db_url=configuration.database_url)
    if configuration.queue_url is not None:
        settings = replace(settings, queue_url=configuration.queue_url)
    return settings


def settings_from_mapping(table: Mapping[str, Any], *, where: str = "server") -> ServerSettings:
    """Settings from the `[server]` table; UsageError naming the first wrong key."""
    known = set(ServerSettings.__dataclass_fields__)
    for key in table:
        if key not in known:
            raise UsageError(f"{where}.{key}: unknown setting; known: {', '.join(sorted(known))}")
    values: dict[str, Any] = {}
    for key, value in table.items():
        values[key] = _convert(key, value, f"{where}.{key}")
    return ServerSettings(**values)


def _convert(key: str, value: Any, where: str) -> Any:
    if key in ("host", "db_url", "queue_url"):
        return _typed(value, str, where)
    if key in ("port", "workers", "max_upload_bytes", "max_request_bytes"):
        number = _typed(value, int, where)
        least = 0 if key in ("port", "workers") else 1
        if isinstance(number, bool) or number < least:
            kind = "a non-negative" if least == 0 else "a positive"
            raise UsageError(f"{where}: must be {kind} integer, not {value!r}")
        return number
    if key == "data_dir":
        return Path(_typed(value, str, where)).absolute()
    if key == "data_roots":
        return tuple(Path(_typed(item, str, where)).absolute() for item in _list(value, where))
    if key in ("allow", "trusted_proxies"):
        return tuple(_network(item, where) for item in _list(value, where))
    return tuple(_token(item, f"{where}[{i}]") for i, item in enumerate(_list(value, where)))


def _typed(value: Any, kind: type, where: str) -> Any:
    if not isinstance(value, kind):
        raise UsageError(f"{where}: expected {kind.__name__}, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a list, got {value!r}")
    return value


def _network(value: Any, where: str) -> str:
    text = _typed(value, str, where)
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not an IP address or CIDR network") from None
    return str(text)


def _token(value: Any, where: str) -> TokenEntry:
    if not isinstance(value, dict):
        raise UsageError(f"{where}: expected a table with name, sha256 and role")
    unknown = set(value) - {"name", "sha256", "role"}
    if unknown:
        raise UsageError(f"{where}.{sorted(unknown)[0]}: unknown key; known: name, sha256, role")
    for key in ("name", "sha256", "role"):
        if key not in value:
            raise UsageError(f"{where}.{key}: missing")
    digest = _typed(value["sha256"], str, f"{where}.sha256").lower()
    if len(digest) != 64 or not set(digest) <= _HEX:
        raise UsageError(f"{where}.sha256: expected 64 hex digits (sha256 of the token)")
    role_name = _typed(value["role"], str, f"{where}.role")
    try:
        role = Role(role_name)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise UsageError(f"{where}.role: {role_name!r} is not one of {roles}") from None
    return TokenEntry(_typed(value["name"], str, f"{where}.name"), digest, role)
