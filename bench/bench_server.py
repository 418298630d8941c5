"""The server's overhead: jobs submitted over HTTP to `ocrswarm serve`, run by ocrd-dummy.

Two measurements against one server (a subprocess on loopback, embedded SQLite, local
workers), each on its own workspace of N tiny pages made first (not timed):
- N single-page processing jobs (POST /processor/run/ocrd-dummy, one per page, one after
  the other on one connection): submissions/s, and completions/s from the first submission
  until every job is SUCCESS (its output in the METS);
- one workflow of three dummy steps over all N pages in one POST /workflow/run: how long the
  answer takes (the issue asks < 1 s for 1,000 pages), and pages/s until job-simple says
  SUCCESS (the issue asks >= 300).

With `--callbacks` every processing job names a callback URL (a receiver in this process),
so the server watches N jobs at once; the figures then include when the last callback came.

Run: `.venv/bin/python bench/bench_server.py [--pages 1000] [-j 2] [--callbacks]`; prints
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from ocrswarm.formats.workspace import Workspace

THREE_DUMMIES = (
    "dummy -I OCR-D-IMG -O OCR-D-DUMMY1\n"
    "dummy -I OCR-D-DUMMY1 -O OCR-D-DUMMY2\n"
    "dummy -I OCR-D-DUMMY2 -O OCR-D-DUMMY3\n"
)
FINISHED = ("SUCCESS", "FAILED", "CANCELLED")
POLL_SECONDS = 0.25  # how often the bench asks for job states (the OCR-D client: every 10 s)


def small_workspace(folder: Path, count: int) -> Path:
    """A workspace of `count` pages, hard links to one small PNG; its METS."""
    scans = folder / "scans"
    scans.mkdir(parents=True)
    first = scans / "page_1.png"
    Image.new("L", (200, 300), 255).save(first, dpi=(300, 300))
    for number in range(2, count + 1):
        os.link(first, scans / f"page_{number}.png")
    return Workspace.from_images(scans, folder / "workspace").mets_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def start_server(root: Path, workers: int) -> tuple[subprocess.Popen[bytes], str]:
    config = root / "server.toml"
    config.write_text(f'[server]\ndata_roots = ["{root}"]\nworkers = {workers}\n')
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ocrswarm",
            "serve",
            "--config",
            str(config),
            "--data-dir",
            str(root / "data"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{url}/processor", timeout=1)
            return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the server did not start")


class CallbackReceiver:
    """Counts the callbacks POSTed to it, and notes when the last one came."""

    def __init__(self) -> None:
        self.job_ids: set[str] = set()
        self.last_at = 0.0
        self.lock = threading.Lock()


@contextmanager
def callback_receiver() -> Iterator[tuple[str, CallbackReceiver]]:
    received = CallbackReceiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            message: dict[str, Any] = json.loads(
                self.rfile.read(int(self.headers["content-length"]))
            )
            with received.lock:
                received.job_ids.add(str(message["job_id"]))
                received.last_at = time.perf_counter()
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{http.server_port}/done", received
    finally:
        http.shutdown()


def processing_jobs(
    client: httpx.Client, mets: Path, pages: int, callbacks: tuple[str, CallbackReceiver] | None
) -> dict[str, object]:
    started = time.perf_counter()
    job_ids = []
    for number in range(1, pages + 1):
        body = {
            "path_to_mets": str(mets),
            "input_file_grps": ["OCR-D-IMG"],
            "output_file_grps": ["OCR-D-SINGLE"],
            "page_id": f"PHYS_{number:04d}",
        }
        if callbacks is not None:
            body["callback_url"] = callbacks[0]
        answer = client.post("/processor/run/ocrd-dummy", json=body).raise_for_status()
        job_ids.append(answer.json()["job_id"])
    submitted = time.perf_counter()
    pending = list(job_ids)
    while pending:
        pending = [
            job_id
            for job_id in pending
            if client.get(f"/processor/job/{job_id}").json()["state"] not in FINISHED
        ]
        if pending:
            time.sleep(POLL_SECONDS)
    finished = time.perf_counter()
    figures: dict[str, object] = {
        "jobs": pages,
        "submit_seconds": round(submitted - started, 3),
        "submissions_per_second": round(pages / (submitted - started), 1),
        "all_done_seconds": round(finished - started, 3),
        "completions_per_second": round(pages / (finished - started), 1),
    }
    if callbacks is not None:
        received = callbacks[1]
        deadline = time.monotonic() + 120
        while len(received.job_ids) < pages and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        with received.lock:
            figures["callbacks_received"] = len(received.job_ids & set(job_ids))
            figures["last_callback_seconds"] = round(received.last_at - started, 3)
    return figures


def workflow_job(client: httpx.Client, mets: Path, pages: int) -> dict[str, object]:
    started = time.perf_counter()
    answer = client.post(
        "/workflow/run",
        params={"mets_path": str(mets), "page_wise": "True"},
        files={"workflow": ("workflow.txt", THREE_DUMMIES.encode())},
    ).raise_for_status()
    answered = time.perf_counter()
    job_id = answer.json()["job_id"]
    while True:
        state = client.get(f"/workflow/job-simple/{job_id}").json()["state"]
        if state in FINISHED:
            break
        time.sleep(POLL_SECONDS)
    finished = time.perf_counter()
    return {
        "pages": pages,
        "steps": 3,
        "state": state,
        "answer_seconds": round(answered - started, 3),
        "done_seconds": round(finished - started, 3),
        "pages_per_second": round(pages / (finished - started), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument(
        "--callbacks", action="store_true", help="a callback URL on every processing job"
    )
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp).resolve()
        single = small_workspace(root / "single", options.pages)
        whole = small_workspace(root / "workflow", options.pages)
        process, url = start_server(root, options.workers)
        try:
            with httpx.Client(base_url=url, timeout=60) as client, callback_receiver() as receiver:
                callbacks = receiver if options.callbacks else None
                result = {
                    "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
                    "workers": options.workers,
                    "processing_jobs": processing_jobs(client, single, options.pages, callbacks),
                    "workflow": workflow_job(client, whole, options.pages),
                }
        finally:
            process.terminate()
            process.wait(60)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
