"""A real `ocrswarm serve` on a free loopback port, in its own process, and a client for it."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocrswarm.formats.workspace import Workspace
from tests.conftest import REPO
from tests.engine.fake_processors import EXTRA_PROCESSORS
from tests.render import render_page

STARTUP_SECONDS = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """An `ocrswarm serve` subprocess; `start` again after `stop`/`kill` to restart it."""

    data_dir: Path
    data_roots: list[Path]
    workers: int = 2
    extra_config: str = ""
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        config = self.data_dir.parent / f"{self.data_dir.name}.toml"
        roots = ", ".join(f'"{root}"' for root in self.data_roots)
        config.write_text(
            f"[server]\ndata_roots = [{roots}]\nworkers = {self.workers}\n{self.extra_config}",
            encoding="utf-8",
        )
        env = dict(os.environ)
        env["OCRSWARM_EXTRA_PROCESSORS"] = EXTRA_PROCESSORS
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        log = open(self.log_path, "ab")  # noqa: SIM115 — the child keeps it open
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocrswarm",
                "serve",
                "--config",
                str(config),
                "--data-dir",
                str(self.data_dir),
                "--port",
                str(self.port),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=REPO,
        )
        log.close()
        self._wait_until_up()

    def _wait_until_up(self) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start:\n{self.log()}")
            try:
                httpx.get(f"{self.url}/processor", timeout=1.0)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise RuntimeError(f"the server did not start:\n{self.log()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Send `sig` and wait for the process to end; its exit code."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        self.process = None
        return code

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path else ""


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Factory: a started server with its own data dir; every one is stopped at the end."""
    started: list[ServerProcess] = []

    def make(**options: object) -> ServerProcess:
        index = len(started)
        data_dir = tmp_path / f"server{index}"
        server = ServerProcess(data_dir, [tmp_path], **options)  # type: ignore[arg-type]
        server.start()
        started.append(server)
        return server

    yield make
    for server in started:
        if server.process is not None:
            server.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the tests that need no server of their own; its data roots hold
    every test's tmp_path."""
    base = tmp_path_factory.getbasetemp()
    shared = ServerProcess(tmp_path_factory.mktemp("shared-server") / "data", [base])
    shared.start()
    yield shared
    if shared.process is not None:
        shared.stop(signal.SIGKILL)


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


@pytest.fixture
def make_workspace(tmp_path: Path) -> Callable[..., Path]:
    """Factory: a workspace of `pages` small rendered pages in OCR-D-IMG; its METS path."""

    def make(pages: int = 3, name: str = "ws") -> Path:
        scans = tmp_path / f"{name}-scans"
        scans.mkdir()
        for n in range(1, pages + 1):
            render_page(scans / f"page_{n:04d}.png", [f"Page {n}"], size=(120, 160))
        return Workspace.from_images(scans, tmp_path / name).mets_path

    return make


def wait_for(
    client: httpx.Client, path: str, done: Callable[[dict[str, object]], bool], timeout: float = 60
) -> dict[str, object]:
    """Poll GET `path` until `done(answer)`; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        answer: dict[str, object] = client.get(path).raise_for_status().json()
        if done(answer) or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]]

    def do_POST(self) -> None:
        length = int(self.headers["content-length"])
        type(self).received.append(json.loads(self.rfile.read(length)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A callback receiver on loopback: its URL, and the JSON messages POSTed to it."""
    handler = type("Handler", (_Receiver,), {"received": []})
    http = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{http.server_port}/done", handler.received
    http.shutdown()
