"""`ocrswarm worker`: a distributed server with two worker processes of the command line
finishes a workflow with every page once; wrong settings are refused by name."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from ocrswarm.engine.database import database_url
from ocrswarm.engine.schema import metadata
from ocrswarm.engine.store import Store
from ocrswarm.errors import ExitCode
from ocrswarm.formats.mets import Mets
from ocrswarm.formats.workspace import Workspace
from tests.conftest import REPO
from tests.engine.conftest import postgres_url  # noqa: F401 (a fixture)
from tests.render import render_page
from tests.server.conftest import free_port

WORKFLOW = "dummy -I OCR-D-IMG -O A\ndummy -I A -O B\ndummy -I B -O C\n"


def ocrswarm(*args: str | Path, **popen: object) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    return subprocess.Popen(  # type: ignore[call-overload, no-any-return]
        [sys.executable, "-m", "ocrswarm", *map(str, args)], cwd=REPO, env=env, **popen
    )


def run_ocrswarm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrswarm", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
        check=False,
    )


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> str:
    """The session's PostgreSQL database (tests.engine.conftest), emptied."""
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(database_url(url))
    with engine.begin() as connection:
        tables = ", ".join(table.name for table in metadata.sorted_tables)
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(30)


def test_serve_and_two_workers_finish_a_workflow_with_every_page_once(
    tmp_path: Path, pg_url: str, amqp_url: str, processes: list[subprocess.Popen[bytes]]
) -> None:
    data = tmp_path / "data"
    scans = tmp_path / "scans"
    scans.mkdir()
    for number in range(1, 51):
        render_page(scans / f"p{number}.png", [f"page {number}"], size=(60, 80))
    mets_path = Workspace.from_images(scans, data / "book").mets_path
    port = free_port()
    config = tmp_path / "ocrswarm.toml"
    config.write_text(
        f'[queue]\nurl = "{amqp_url}"\n\n[database]\nurl = "{pg_url}"\n\n'
        f'[server]\ndata_dir = "{data}"\nport = {port}\nworkers = 0\n\n'
        '[worker]\njobs = 2\nprocessors = ["ocrd-swarm-dummy"]\n',
        encoding="utf-8",
    )
    logs = {name: open(tmp_path / f"{name}.log", "wb") for name in ("serve", "w1", "w2")}  # noqa: SIM115
    processes.append(
        ocrswarm("serve", "--config", config, stdout=logs["serve"], stderr=subprocess.STDOUT)
    )
    for name in ("w1", "w2"):
        processes.append(
            ocrswarm(
                "worker",
                "--config",
                config,
                "--id",
                name,
                stdout=logs[name],
                stderr=subprocess.STDOUT,
            )
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    deadline = time.monotonic() + 60
    while True:
        try:
            if client.get("/health").status_code == 200:
                break
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()
        time.sleep(0.2)
    files = {"workflow": ("workflow.txt", WORKFLOW.encode(), "text/plain")}
    run = client.post("/workflow/run", params={"mets_path": str(mets_path)}, files=files)
    job_id = run.raise_for_status().json()["job_id"]
    deadline = time.monotonic() + 240
    while (state := client.get(f"/workflow/job-simple/{job_id}").json()["state"]) != "SUCCESS":
        assert state not in ("FAILED", "CANCELLED") and time.monotonic() < deadline, state
        time.sleep(0.3)
    for process in processes[1:]:
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    processes[0].send_signal(signal.SIGTERM)
    assert processes[0].wait(60) in (0, -signal.SIGTERM)  # uvicorn ends by the signal
    mets = Mets.read(mets_path)
    for grp in ("A", "B", "C"):
        pages = [f.page_id for f in mets.find_files(file_grp=grp)]
        assert sorted(pages) == sorted(mets.page_ids) and len(pages) == 50
    with Store(pg_url) as store:
        assert {job.state for job in store.jobs()} == {"SUCCESS"}
        workers = {w.id: w for w in store.list_workers()}
        assert set(workers) == {"w1", "w2"}
        assert all(w.stopped_at is not None and w.capacity == 2 for w in workers.values())
        done_by = {t.worker_id for j in store.jobs() for t in store.page_tasks(j.id)}
    # a task names the registered worker that did it, and which of its processes
    assert {worker_id.rpartition("/")[::2] for worker_id in done_by} <= {
        (name, slot) for name in ("w1", "w2") for slot in ("0", "1")
    }


def test_a_worker_needs_a_queue_and_a_shared_database(tmp_path: Path) -> None:
    done = run_ocrswarm("worker", "--db", "postgresql://u@h/db")
    assert done.returncode == int(ExitCode.USAGE) and "--queue" in done.stderr
    done = run_ocrswarm("worker", "--queue", "amqp://h/", "--db", f"sqlite:///{tmp_path}/s")
    assert done.returncode == int(ExitCode.USAGE) and "postgresql" in done.stderr


def test_a_wrong_worker_setting_is_named(tmp_path: Path) -> None:
    config = tmp_path / "ocrswarm.toml"
    config.write_text("[worker]\njobs = 0\n", encoding="utf-8")
    done = run_ocrswarm("worker", "--config", config)
    assert done.returncode == int(ExitCode.USAGE) and "worker.jobs" in done.stderr
    config.write_text("[workers]\njobs = 2\n", encoding="utf-8")
    done = run_ocrswarm("worker", "--config", config)
    assert done.returncode == int(ExitCode.USAGE) and "workers: unknown table" in done.stderr


def test_an_unreachable_broker_is_a_clear_error(tmp_path: Path, pg_url: str) -> None:
    done = run_ocrswarm(
        "worker", "--queue", f"amqp://guest:guest@127.0.0.1:{free_port()}/", "--db", pg_url
    )
    assert done.returncode == int(ExitCode.FAILURE)
    assert "cannot connect to RabbitMQ" in done.stderr and "guest:***" in done.stderr
