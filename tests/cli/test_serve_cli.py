"""`ocrswarm serve`: options, and a wrong configuration refused before anything starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ocrswarm.errors import ExitCode
from tests.conftest import REPO


def ocrswarm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrswarm", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


def test_help_lists_the_options() -> None:
    done = ocrswarm("serve", "--help")
    assert done.returncode == 0
    for option in ("--host", "--port", "--data-dir", "--config"):
        assert option in done.stdout


def test_a_wrong_key_in_the_configuration_is_named(tmp_path: Path) -> None:
    config = tmp_path / "server.toml"
    config.write_text("[server]\nport = 8000\nworkerz = 2\n", encoding="utf-8")
    done = ocrswarm("serve", "--config", config, "--data-dir", tmp_path / "data")
    assert done.returncode == int(ExitCode.USAGE)
    assert "server.workerz" in done.stderr
    assert not (tmp_path / "data").exists()
