"""The real `ocrd network client` (PyPI `ocrd`) against `ocrswarm serve` on loopback."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrswarm.formats.mets import Mets
from tests.server.conftest import ServerProcess

pytestmark = pytest.mark.interop

DUMMY_WORKFLOW = (
    "dummy -I OCR-D-IMG -O OCR-D-DUMMY1\n"
    "dummy -I OCR-D-DUMMY1 -O OCR-D-DUMMY2\n"
    "dummy -I OCR-D-DUMMY2 -O OCR-D-DUMMY3\n"
)


@pytest.fixture
def kant(shared_data: Path, tmp_path: Path) -> Path:
    """A copy of the kant_aufklaerung_1784 workspace; its METS."""
    target = tmp_path / "kant"
    shutil.copytree(shared_data / "kant_aufklaerung_1784" / "data", target)
    return target / "mets.xml"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(tmp_path / "server", [tmp_path])
    server.start()
    yield server
    server.stop()


def client(ocrd_bin: Path, server: ServerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env["OCRD_NETWORK_SERVER_ADDR_PROCESSING"] = server.url
    env["OCRD_NETWORK_CLIENT_POLLING_SLEEP"] = "1"
    env["OCRD_NETWORK_CLIENT_POLLING_TIMEOUT"] = "120"
    done = subprocess.run(
        [str(ocrd_bin), "network", "client", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env=env,
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr, server.log())
    return done


def test_discovery(ocrd_bin: Path, served: ServerProcess) -> None:
    listed = client(ocrd_bin, served, "discovery", "processors")
    assert "ocrd-dummy" in listed.stdout
    tool = client(ocrd_bin, served, "discovery", "processor", "ocrd-dummy")
    assert '"executable": "ocrd-swarm-dummy"' in tool.stdout


def test_processing_run_status_and_log(ocrd_bin: Path, served: ServerProcess, kant: Path) -> None:
    ran = client(
        ocrd_bin,
        served,
        "processing", "run", "ocrd-dummy",
        "-m", str(kant), "-I", "OCR-D-IMG", "-O", "OCR-D-DUMMY", "-b",
    )  # fmt: skip
    found = re.search(r"Processing job id: (\S+)", ran.stdout)
    assert found, ran.stdout
    job_id = found.group(1)
    status = client(ocrd_bin, served, "processing", "check-status", "-j", job_id)
    assert "SUCCESS" in status.stdout
    log = client(ocrd_bin, served, "processing", "check-log", "-j", job_id)
    assert "ocrd-swarm-dummy" in log.stdout
    mets = Mets.read(kant)
    assert len(mets.find_files(file_grp="OCR-D-DUMMY")) == len(mets.page_ids)


def test_workflow_run_blocks_until_success(
    ocrd_bin: Path, served: ServerProcess, kant: Path, tmp_path: Path, shared_spec: Path
) -> None:
    workflow = shared_spec / "ocrd-core" / "dummy-workflow.txt"
    if not workflow.is_file():
        workflow = tmp_path / "dummy-workflow.txt"
        workflow.write_text(DUMMY_WORKFLOW, encoding="utf-8")
    ran = client(ocrd_bin, served, "workflow", "run", "-m", str(kant), "-w", str(workflow), "-b")
    assert "Workflow succeeded" in ran.stdout
    mets = Mets.read(kant)
    for grp in ("OCR-D-DUMMY1", "OCR-D-DUMMY2", "OCR-D-DUMMY3"):
        assert len(mets.find_files(file_grp=grp)) == len(mets.page_ids)
