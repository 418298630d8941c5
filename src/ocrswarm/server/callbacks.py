"""Result messages POSTed to a job's `callback_url`, in the background.

A callback is a courtesy to the caller: it is retried with exponential backoff, and an
unreachable or failing receiver is logged and given up on — it never fails, delays or
blocks the job it reports on. Callbacks owed for unfinished jobs are kept on disk
(`PendingCallbacks`), so a job that finishes after a restart is still reported.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from ocrswarm.formats.atomicfile import write_atomic

log = logging.getLogger(__name__)

DEFAULT_BACKOFF: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)  # waits between attempts


@dataclass(frozen=True, slots=True)
class Callback:
    url: str
    message: Mapping[str, Any]


class CallbackSender:
    """One background thread that delivers callbacks in order, each with its retries."""

    def __init__(
        self,
        pending: PendingCallbacks,
        *,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        timeout: float = 10.0,
    ):
        self.pending = pending
        self._backoff = tuple(backoff)
        self._timeout = timeout
        self._queue: queue.Queue[Callback | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ocrswarm-callbacks", daemon=True)
        self.delivered = 0
        self.given_up = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the callback being delivered (waits for no retries)."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=self._timeout + 1)

    def send(self, url: str, message: Mapping[str, Any]) -> None:
        """Queue `message` for `url`; returns at once."""
        self._queue.put(Callback(url, dict(message)))

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                if self._deliver(client, item):
                    self.delivered += 1
                else:
                    self.given_up += 1

    def _deliver(self, client: httpx.Client, callback: Callback) -> bool:
        waits = (*self._backoff, None)
        for attempt, wait in enumerate(waits, start=1):
            try:
                response = client.post(callback.url, json=dict(callback.message))
                if response.status_code < 400:
                    return True
                problem = f"HTTP {response.status_code}"
            except httpx.HTTPError as error:
                problem = f"{type(error).__name__}: {error}"
            log.warning("callback %s, attempt %d: %s", callback.url, attempt, problem)
            if wait is None or self._stopping.wait(wait):
                break
        log.error("callback %s given up: %s", callback.url, dict(callback.message))
        return False


@dataclass(frozen=True, slots=True)
class PendingCallback:
    """A callback promised for a job that has not finished yet."""

    job_id: str
    workflow: bool
    url: str
    where: Mapping[str, str]  # {"path_to_mets": …} or {"workspace_id": …}


class PendingCallbacks:
    """The callbacks still owed, kept in a JSON file so a restarted server still sends them."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: dict[str, PendingCallback] = {}
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = []
        for item in stored if isinstance(stored, list) else []:
            try:
                entry = PendingCallback(
                    str(item["job_id"]), bool(item["workflow"]), str(item["url"]), item["where"]
                )
            except (KeyError, TypeError):
                continue
            self._entries[entry.job_id] = entry

    def entries(self) -> list[PendingCallback]:
        with self._lock:
            return list(self._entries.values())

    def add(self, entry: PendingCallback) -> None:
        with self._lock:
            self._entries[entry.job_id] = entry
            self._save()

    def remove(self, job_id: str) -> None:
        with self._lock:
            if self._entries.pop(job_id, None) is not None:
                self._save()

    def _save(self) -> None:
        document = [
            {"job_id": e.job_id, "workflow": e.workflow, "url": e.url, "where": dict(e.where)}
            for e in self._entries.values()
        ]
        write_atomic(self._path, json.dumps(document).encode("utf-8"))
