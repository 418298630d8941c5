"""Point 6: a server stopped mid-workflow (SIGTERM or kill -9) continues after a restart,
does nothing twice in the METS, and leaves no job RUNNING."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocrswarm.formats.mets import Mets
from tests.server.conftest import ServerProcess, _Receiver, free_port, wait_for

PAGES = 30
SLOW_TWO_STEPS = (
    "test-sleep -I OCR-D-IMG -O SLOW1 -P seconds 0.1\n"
    "test-sleep -I SLOW1 -O SLOW2 -P seconds 0.05\n"
)


def pages_done(client: httpx.Client, job_id: str) -> int:
    status = client.get(f"/workflow/job/{job_id}").raise_for_status().json()
    return int(status["processors"]["SLOW2"]["counts"].get("SUCCESS", 0))


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_a_restarted_server_finishes_the_workflow_once(
    server_factory: Callable[..., ServerProcess],
    make_workspace: Callable[..., Path],
    stop_signal: int,
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    callback_url, received = receiver
    mets = make_workspace(PAGES)
    server = server_factory()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        job = (
            client.post(
                "/workflow/run",
                params={"mets_path": str(mets), "workflow_callback_url": callback_url},
                files={"workflow": ("w.txt", SLOW_TWO_STEPS.encode())},
            )
            .raise_for_status()
            .json()
        )
        deadline = time.monotonic() + 60
        while pages_done(client, job["job_id"]) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 < pages_done(client, job["job_id"]) < PAGES
    assert received == []
    code = server.stop(stop_signal)
    if stop_signal == signal.SIGTERM:  # uvicorn exits by the signal, after a clean shutdown
        assert code in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in server.log()
    else:
        assert code == -signal.SIGKILL
    server.start()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        simple = wait_for(
            client,
            f"/workflow/job-simple/{job['job_id']}",
            lambda answer: answer["state"] in ("SUCCESS", "FAILED"),
            timeout=120,
        )
        assert simple["state"] == "SUCCESS", server.log()
        status = client.get(f"/workflow/job/{job['job_id']}").raise_for_status().json()
        for step in status["processors"].values():
            assert step["state"] == "SUCCESS"
            assert step["counts"] == {"SUCCESS": PAGES}
    deadline = time.monotonic() + 30
    while not received and time.monotonic() < deadline:
        time.sleep(0.1)
    assert received == [
        {"job_id": job["job_id"], "state": "SUCCESS", "path_to_mets": str(mets.resolve())}
    ]
    document = Mets.read(mets)
    ids = [file.id for file in document.files]
    assert len(ids) == len(set(ids))
    for grp in ("SLOW1", "SLOW2"):
        pages = Counter(file.page_id for file in document.find_files(file_grp=grp))
        assert pages == dict.fromkeys(document.page_ids, 1)


@contextmanager
def receiver_on(port: int) -> Iterator[list[dict[str, Any]]]:
    """A callback receiver on a given loopback port; the messages POSTed to it."""
    handler = type("Handler", (_Receiver,), {"received": []})
    http = HTTPServer(("127.0.0.1", port), handler)
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler.received
    finally:
        http.shutdown()
        http.server_close()


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_a_callback_not_yet_delivered_is_sent_by_the_restarted_server(
    server_factory: Callable[..., ServerProcess],
    make_workspace: Callable[..., Path],
    stop_signal: int,
) -> None:
    """Delivery is at least once: the promise leaves the server's disk only once delivered
    (or given up after its retries), so the restarted server sends it; a server that dies
    between delivery and removal sends it again, and receivers tell repeats by job_id."""
    mets = make_workspace(2)
    port = free_port()  # nobody listens there yet
    server = server_factory()
    with httpx.Client(base_url=server.url, timeout=30) as client:
        body = {
            "path_to_mets": str(mets),
            "input_file_grps": ["OCR-D-IMG"],
            "output_file_grps": ["OCR-D-DUMMY"],
            "callback_url": f"http://127.0.0.1:{port}/done",
        }
        job = client.post("/processor/run/ocrd-dummy", json=body).raise_for_status().json()
        done = wait_for(
            client, f"/processor/job/{job['job_id']}", lambda a: a["state"] == "SUCCESS"
        )
        assert done["state"] == "SUCCESS"
    deadline = time.monotonic() + 30
    while not re.search(rf"{job['job_id']}.*attempt 1", server.log()):  # tried, and failed
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.05)
    server.stop(stop_signal)
    with receiver_on(port) as received:
        server.start()
        deadline = time.monotonic() + 60
        while not received:
            assert time.monotonic() < deadline, server.log()
            time.sleep(0.05)
        expected = {
            "job_id": job["job_id"],
            "state": "SUCCESS",
            "path_to_mets": str(mets.resolve()),
        }
        assert received[0] == expected
        assert all(message == expected for message in received)


def test_a_second_server_on_the_same_data_dir_is_refused(
    server_factory: Callable[..., ServerProcess],
) -> None:
    first = server_factory()
    second = ServerProcess(first.data_dir, first.data_roots)
    with pytest.raises(RuntimeError, match="another ocrswarm serve"):
        second.start()
    assert first.process is not None
    assert first.process.poll() is None


def test_sigterm_ends_a_live_progress_stream_and_the_server(
    server_factory: Callable[..., ServerProcess], make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(PAGES)
    server = server_factory()
    slow = "test-sleep -I OCR-D-IMG -O SLOW1 -P seconds 1\n"
    with httpx.Client(base_url=server.url, timeout=30) as client:
        job = (
            client.post(
                "/workflow/run",
                params={"mets_path": str(mets)},
                files={"workflow": ("w.txt", slow.encode())},
            )
            .raise_for_status()
            .json()
        )
    lines: list[str] = []
    first_event = threading.Event()

    def listen() -> None:
        with httpx.stream("GET", f"{server.url}/job/{job['job_id']}/events", timeout=60) as events:
            for line in events.iter_lines():
                lines.append(line)
                first_event.set()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert first_event.wait(30)
    assert server.process is not None
    server.process.send_signal(signal.SIGTERM)
    listener.join(15)  # generous; without the stop signal the stream stays open for the job

    assert not listener.is_alive(), "the event stream stayed open after SIGTERM"
    end = lines[lines.index("event: end") + 1]
    assert '"server_stopping":true' in end
    assert server.stop(timeout=15) in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in server.log()
