"""`ocrswarm worker --server URL --token T`: a worker that cannot see the server's files
finishes a workflow over HTTP file transfer.

The worker runs in a mount namespace of its own with an empty tmpfs mounted over the
server's whole directory, so it could not read a byte of it even if it tried: whatever the
processors read, the worker downloaded; whatever lands in the server's METS, it uploaded.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from ocrswarm.errors import ExitCode
from ocrswarm.formats.mets import Mets
from ocrswarm.formats.workspace import Workspace
from ocrswarm.server.auth import token_digest
from tests.cli.test_worker_cli import ocrswarm, pg_url, processes, run_ocrswarm  # noqa: F401
from tests.conftest import REPO, require_or_skip
from tests.engine.conftest import postgres_url  # noqa: F401 (a fixture)
from tests.render import render_page
from tests.server.conftest import free_port

WORKFLOW = "dummy -I OCR-D-IMG -O A -P copy_files true\ndummy -I A -O B\n"
SUBMITTER_TOKEN = "submitter-token-for-the-http-test"
WORKER_TOKEN = "worker-token-for-the-http-test"
PAGES = 6


def hidden(directory: Path, *command: str | Path) -> list[str]:
    """`command` in a mount namespace where `directory` is an empty tmpfs."""
    script = f'mount -t tmpfs ocrswarm-hidden "{directory}" && exec "$@"'
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"] + [
        str(part) for part in command
    ]


@pytest.fixture
def can_hide(tmp_path: Path) -> None:
    """Root and unshare, and a hidden directory really looks empty."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        require_or_skip("hiding the server's files needs root and unshare (mount namespaces)")
    probe = tmp_path / "probe"
    probe.mkdir()
    (probe / "secret").write_text("x")
    seen = subprocess.run(
        hidden(probe, "ls", "-A", probe), capture_output=True, text=True, check=False
    )
    if seen.returncode != 0:
        require_or_skip(f"no mount namespace here: {seen.stderr.strip()}")
    assert seen.stdout == ""


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_a_worker_without_the_servers_files_finishes_a_workflow_over_http(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
    amqp_url: str,
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
    can_hide: None,
) -> None:
    server_root = tmp_path / "server"  # everything of the server's; hidden from the worker
    data = server_root / "data"
    scans = server_root / "scans"
    scans.mkdir(parents=True)
    for number in range(1, PAGES + 1):
        render_page(scans / f"p{number}.png", [f"page {number}"], size=(60, 80))
    mets_path = Workspace.from_images(scans, data / "book").mets_path
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server_config = write_config(
        server_root / "server.toml",
        f'[queue]\nurl = "{amqp_url}"\n\n[database]\nurl = "{pg_url}"\n\n'
        f'[server]\ndata_dir = "{data}"\nport = {port}\nworkers = 0\n\n'
        f'[[server.tokens]]\nname = "ci"\nsha256 = "{token_digest(SUBMITTER_TOKEN)}"\n'
        'role = "submitter"\n\n'
        f'[[server.tokens]]\nname = "remote"\nsha256 = "{token_digest(WORKER_TOKEN)}"\n'
        'role = "worker"\n',
    )
    worker_root = tmp_path / "worker"
    worker_root.mkdir()
    mirror = worker_root / "mirror"
    worker_config = write_config(
        worker_root / "worker.toml",
        f'[queue]\nurl = "{amqp_url}"\n\n[database]\nurl = "{pg_url}"\n\n'
        f'[worker]\njobs = 2\nprocessors = ["ocrd-swarm-dummy"]\nid = "remote"\n'
        f'server = "{url}"\ntoken = "{WORKER_TOKEN}"\nmirror_dir = "{mirror}"\n',
    )
    serve_log = open(tmp_path / "serve.log", "wb")  # noqa: SIM115 — the child keeps it
    worker_log = open(tmp_path / "worker.log", "wb")  # noqa: SIM115
    processes.append(
        ocrswarm("serve", "--config", server_config, stdout=serve_log, stderr=subprocess.STDOUT)
    )
    client = httpx.Client(
        base_url=url, timeout=30, headers={"Authorization": f"Bearer {SUBMITTER_TOKEN}"}
    )
    wait_for_server(client, tmp_path / "serve.log")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    processes.append(
        subprocess.Popen(
            hidden(
                server_root, sys.executable, "-m", "ocrswarm", "worker", "--config", worker_config
            ),
            cwd=worker_root,
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
    )

    files = {"workflow": ("workflow.txt", WORKFLOW.encode(), "text/plain")}
    run = client.post("/workflow/run", params={"mets_path": str(mets_path)}, files=files)
    job_id = run.raise_for_status().json()["job_id"]
    deadline = time.monotonic() + 180
    while (state := client.get(f"/workflow/job-simple/{job_id}").json()["state"]) != "SUCCESS":
        log = (tmp_path / "worker.log").read_text(errors="replace")
        assert state not in ("FAILED", "CANCELLED") and time.monotonic() < deadline, (state, log)
        time.sleep(0.3)
    workers = client.get("/workers").json()
    processes[1].send_signal(signal.SIGTERM)
    assert processes[1].wait(60) == 0

    assert [(w["id"], w["alive"], w["capacity"]) for w in workers["workers"]] == [
        ("remote", True, 2)
    ]
    mets = Mets.read(mets_path)
    book = mets_path.parent
    local = mirror / workspace_id_of(client, job_id)
    for grp in ("A", "B"):
        files_of_grp = mets.find_files(file_grp=grp)
        assert sorted({f.page_id for f in files_of_grp}) == sorted(mets.page_ids)
        for file in files_of_grp:  # the server holds what the worker wrote, byte for byte
            assert (book / file.href).read_bytes() == (local / file.href).read_bytes()
    assert len(mets.find_files(file_grp="A")) == 2 * PAGES  # the image copies and the PAGEs
    for image in mets.find_files(file_grp="OCR-D-IMG"):  # downloaded into the mirror
        assert (local / image.href).read_bytes() == (book / image.href).read_bytes()


def workspace_id_of(client: httpx.Client, job_id: str) -> str:
    workspace_id: str = client.get(f"/workflow/job/{job_id}").json()["workspace_id"]
    return workspace_id


def wait_for_server(client: httpx.Client, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/processor").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, log.read_text(errors="replace")
        time.sleep(0.2)


def test_a_rejected_token_stops_the_worker_before_it_takes_a_page(
    tmp_path: Path,
    pg_url: str,  # noqa: F811
    amqp_url: str,
    processes: list[subprocess.Popen[bytes]],  # noqa: F811
) -> None:
    port = free_port()
    config = write_config(
        tmp_path / "server.toml",
        f'[server]\ndata_dir = "{tmp_path / "data"}"\nport = {port}\nworkers = 1\n\n'
        f'[[server.tokens]]\nname = "remote"\nsha256 = "{token_digest(WORKER_TOKEN)}"\n'
        'role = "worker"\n',
    )
    processes.append(ocrswarm("serve", "--config", config, stdout=subprocess.DEVNULL))
    wait_for_health(f"http://127.0.0.1:{port}")

    done = run_ocrswarm(
        "worker",
        "--queue",
        amqp_url,
        "--db",
        pg_url,
        "--server",
        f"http://127.0.0.1:{port}",
        "--token",
        "not-the-token",
        "--mirror-dir",
        tmp_path / "mirror",
    )

    assert done.returncode == int(ExitCode.FAILURE), done.stderr
    assert "rejected the worker's token" in done.stderr and "401" in done.stderr


def wait_for_health(url: str) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/health").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.2)


@pytest.mark.parametrize(
    ("options", "needle"),
    [
        (["--server", "http://127.0.0.1:1"], "--token"),
        (["--server", "ftp://example.org", "--token", "t"], "http"),
        (["--server", "http://127.0.0.1:1", "--token", "t", "--path-map", "/a=/b"], "not both"),
    ],
)
def test_wrong_file_transfer_options_are_named(options: list[str], needle: str) -> None:
    done = run_ocrswarm("worker", "--queue", "amqp://h/", "--db", "postgresql://u@h/db", *options)

    assert done.returncode == int(ExitCode.USAGE), done.stderr
    assert needle in done.stderr
