"""The real OCR-D tools, installed by `make interop` into their own virtual environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO, require_or_skip


@pytest.fixture(scope="session")
def ocrd_bin() -> Path:
    """Path of the real `ocrd` command (PyPI `ocrd`), or a visible skip (a failure in CI)."""
    venv = Path(os.environ.get("OCRSWARM_OCRD_VENV", REPO / ".venv-ocrd"))
    binary = venv / "bin" / "ocrd"
    if not binary.is_file():
        require_or_skip(f"the OCR-D tools are not installed at {venv} (run `make interop`)")
    return binary


def run_ocrd(
    ocrd_bin: Path, *args: str, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `ocrd ARGS…` and return the finished process (output captured as text)."""
    return subprocess.run(
        [str(ocrd_bin), *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )
