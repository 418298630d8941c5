"""A distributed deployment as real processes: `ocrswarm serve` and `ocrswarm worker`s.

Every process runs in a process group of its own (a worker's local worker processes with
it), dies with the test run (PR_SET_PDEATHSIG) and writes its output to a log file that the
conftest attaches to a failing test's report. A worker may run inside a network namespace
(`tests.distributed.hosts`). One TOML file per process, as a deployment would have them:
[server], [queue], [database] and [worker] tables.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ocrswarm.server.auth import token_digest
from tests.conftest import REPO
from tests.distributed.hosts import Host
from tests.distributed.services import die_with_parent, free_port, tail
from tests.engine.fake_processors import EXTRA_PROCESSORS

STARTUP_SECONDS = 60.0
# The API tokens of every cluster, made up for the tests (only their digests are configured).
SUBMITTER_TOKEN = "distributed-test-submitter"
WORKER_TOKEN = "distributed-test-worker"
# How fast a vanished worker is noticed: its leases lapse after LEASE_SECONDS, RabbitMQ
# drops its connection after two missed heartbeats (and hands its messages to others).
LEASE_SECONDS = 5
HEARTBEAT_SECONDS = 3


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def config_text(tables: dict[str, dict[str, Any]]) -> str:
    """A TOML document of tables; a list of tables in one becomes an array of tables."""
    text = ""
    for name, table in tables.items():
        text += f"[{name}]\n"
        arrays = {key: value for key, value in table.items() if _is_tables(value)}
        for key, value in table.items():
            if key not in arrays:
                text += f"{key} = {_toml(value)}\n"
        for key, entries in arrays.items():
            for entry in entries:
                text += f"[[{name}.{key}]]\n"
                text += "".join(f"{k} = {_toml(v)}\n" for k, v in entry.items())
    return text


def _is_tables(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)


@dataclass
class Process:
    """A child process in its own process group, its output in `log_path`."""

    name: str
    argv: list[str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = dict(os.environ)
        env["OCRSWARM_EXTRA_PROCESSORS"] = EXTRA_PROCESSORS
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        with open(self.log_path, "ab") as log:
            log.write(f"--- start: {' '.join(self.argv)}\n".encode())
            log.flush()
            self.process = subprocess.Popen(
                self.argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                cwd=REPO,
                start_new_session=True,
                preexec_fn=die_with_parent(),
            )

    @property
    def pid(self) -> int:
        assert self.process is not None, f"{self.name} is not running"
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def send(self, sig: int) -> None:
        """Send `sig` to the main process only."""
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send `sig` to the whole process group (the machine dies: every process of it)."""
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig`, wait for the exit; SIGKILL to the group after `timeout`. The code."""
        assert self.process is not None, f"{self.name} is not running"
        process = self.process
        if process.poll() is None:
            process.send_signal(sig)
        try:
            code = process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill_group()
            code = process.wait(10)
        self.kill_group()  # whatever of the group outlived its leader
        self.process = None
        return code

    def log(self) -> str:
        return tail(self.log_path, 200)


@dataclass
class Cluster:
    """The server and the workers of one test, on one RabbitMQ vhost and one database.

    `server_host` is where the server listens (the bridge address when workers run in
    namespaces); `service_host` is how a namespaced worker reaches RabbitMQ and PostgreSQL.
    """

    root: Path
    queue_url: Callable[[str], str]  # host -> amqp URL of this test's vhost
    database_url: Callable[[str], str]  # host -> postgresql URL of this test's database
    server_host: str = "127.0.0.1"
    processes: list[Process] = field(default_factory=list)
    server: Process | None = None
    port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        return f"http://{self.server_host}:{self.port}"

    def _config(self, name: str, tables: dict[str, dict[str, Any]]) -> Path:
        path = self.root / f"{name}.toml"
        path.write_text(config_text(tables), encoding="utf-8")
        return path

    def start_server(self) -> Process:
        """`ocrswarm serve --config` without local workers, with a submitter's and a
        worker's token; returns once HTTP answers.
        Called again after the server stopped, it starts it again on the same port."""
        config = self._config(
            "server",
            {
                "server": {
                    "host": self.server_host,
                    "port": self.port,
                    "data_dir": str(self.root / "server-data"),
                    "data_roots": [str(self.root)],
                    "workers": 0,
                    "tokens": [
                        {
                            "name": "test",
                            "sha256": token_digest(SUBMITTER_TOKEN),
                            "role": "submitter",
                        },
                        {"name": "workers", "sha256": token_digest(WORKER_TOKEN), "role": "worker"},
                    ],
                },
                "queue": {"url": self.queue_url("127.0.0.1")},
                "database": {"url": self.database_url("127.0.0.1")},
            },
        )
        if self.server is None:
            self.server = Process(
                "server",
                [sys.executable, "-m", "ocrswarm", "serve", "--config", str(config)],
                self.root / "server.log",
            )
            self.processes.append(self.server)
        self.server.start()
        self._wait(self.server, self._http_answers, "answers HTTP")
        return self.server

    def _http_answers(self) -> bool:
        try:
            httpx.get(f"{self.url}/health", timeout=2)
        except httpx.TransportError:
            return False
        return True

    def start_worker(
        self,
        name: str,
        *,
        jobs: int = 2,
        processors: str = "ocrd-test-sleep",
        host: Host | None = None,
        http_transfer: bool = False,
    ) -> Process:
        """`ocrswarm worker --config` (in `host`'s namespace if given); returns at once.
        `http_transfer`: the worker has no shared directory and fetches and pushes the files
        from and to the server over HTTP (`server`, `token`, `mirror_dir`)."""
        where = "127.0.0.1" if host is None else self.server_host
        worker: dict[str, Any] = {"jobs": jobs, "id": name, "lease_seconds": LEASE_SECONDS}
        if http_transfer:
            worker |= {
                "server": self.url,
                "token": WORKER_TOKEN,
                "mirror_dir": str(self.root / f"{name}-mirror"),
            }
        config = self._config(
            name,
            {
                "queue": {"url": self.queue_url(where)},
                "database": {"url": self.database_url(where)},
                "worker": worker,
            },
        )
        argv = [sys.executable, "-m", "ocrswarm", "worker", "--config", str(config)]
        argv += ["--processors", processors]
        process = Process(name, host.command(argv) if host else argv, self.root / f"{name}.log")
        self.processes.append(process)
        process.start()
        return process

    def wait_for_workers(self, processes: int) -> None:
        """Until /health says `processes` worker processes are alive (all registered)."""
        assert self.server is not None

        def ready() -> bool:
            try:
                answer = httpx.get(f"{self.url}/health", timeout=5).json()
            except (httpx.TransportError, ValueError):
                return False
            return bool(answer.get("workers_alive", 0) >= processes)

        self._wait(self.server, ready, f"counts {processes} worker processes")

    def _wait(self, process: Process, ready: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while not ready():
            if not process.alive():
                raise RuntimeError(f"{process.name} exited before it {what}:\n{process.log()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{process.name} never {what}:\n{process.log()}")
            time.sleep(0.1)

    @contextlib.contextmanager
    def client(self) -> Iterator[httpx.Client]:
        with httpx.Client(
            base_url=self.url,
            timeout=30,
            headers={"Authorization": f"Bearer {SUBMITTER_TOKEN}"},
        ) as http:
            yield http

    def submit(self, mets: Path, workflow: str) -> str:
        """POST /workflow/run; the workflow job's id."""
        with self.client() as http:
            answer = http.post(
                "/workflow/run",
                params={"mets_path": str(mets)},
                files={"workflow": ("workflow.txt", workflow.encode())},
            )
        answer.raise_for_status()
        job_id: str = answer.json()["job_id"]
        return job_id

    def pages_done(self, job_id: str) -> int:
        """How many page tasks of the workflow job have succeeded (all steps)."""
        with self.client() as http:
            status = http.get(f"/workflow/job/{job_id}").raise_for_status().json()
        return sum(int(step["counts"].get("SUCCESS", 0)) for step in status["processors"].values())

    def wait_until_done(self, job_id: str, timeout: float = 180) -> str:
        """Poll job-simple until the job has finished (or `timeout`); its state. Transport
        errors while the server is away are waited out."""
        deadline = time.monotonic() + timeout
        state = "UNKNOWN"
        while time.monotonic() < deadline:
            try:
                with self.client() as http:
                    state = (
                        http.get(f"/workflow/job-simple/{job_id}")
                        .raise_for_status()
                        .json()["state"]
                    )
            except httpx.TransportError:
                state = "SERVER UNREACHABLE"
            if state in ("SUCCESS", "FAILED", "CANCELLED"):
                return state
            time.sleep(0.25)
        return state

    def logs(self) -> list[tuple[str, str]]:
        return [(process.name, process.log()) for process in self.processes]

    def close(self) -> None:
        for process in self.processes:
            if process.process is not None:
                process.stop(signal.SIGKILL, timeout=10)
