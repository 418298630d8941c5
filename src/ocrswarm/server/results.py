"""Result messages when a job ends: POSTed to its `callback_url`, published to its
`result_queue_name` — one delivery mechanism with two transports.

A result is a courtesy to the caller: every delivery is retried with exponential backoff,
and a receiver that stays unreachable (an HTTP endpoint, or RabbitMQ) is logged and given up
on — it never fails, delays or blocks the job it reports on. The results owed are kept on
disk (`PendingResults`) until each destination has been served, so a job that finishes
after a restart, or a delivery a stopping server did not get to, is still reported (at least
once).

The two transports carry the message each receiver expects. A callback gets what OCR-D
core's processing server POSTs, `{job_id, state, path_to_mets|workspace_id}` with the job's
state. A result queue gets the Web API spec's result message (result-message.schema.yml):
`{job_id, status, path_to_mets|workspace_id}`, where `status` is SUCCESS or FAILED (a
cancelled job did not succeed). The queue is declared on the fly (durable) and the message
is persistent and confirmed by the broker (`engine.amqp.publish_json`).
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import httpx

from ocrswarm.engine.amqp import publish_json
from ocrswarm.engine.states import State
from ocrswarm.errors import OcrswarmError, UsageError
from ocrswarm.formats.atomicfile import write_atomic

log = logging.getLogger(__name__)

DEFAULT_BACKOFF: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0)  # waits between attempts
_MAX_QUEUE_NAME_BYTES = 255  # AMQP's limit on a queue name


class Transport(StrEnum):
    CALLBACK = "callback"  # an HTTP POST to a URL
    QUEUE = "queue"  # a message in a RabbitMQ queue


@dataclass(frozen=True, slots=True)
class Destination:
    """Where one result goes: a callback URL, or a result queue's name."""

    transport: Transport
    address: str


@dataclass(frozen=True, slots=True)
class PendingResult:
    """The result owed for a job that has not finished (or not been reported) yet."""

    job_id: str
    workflow: bool
    where: Mapping[str, str]  # {"path_to_mets": …} or {"workspace_id": …}
    destinations: tuple[Destination, ...]


def callback_message(job_id: str, state: State, where: Mapping[str, str]) -> dict[str, Any]:
    """What a callback URL receives: the job's final state, as OCR-D core sends it."""
    return {"job_id": job_id, "state": str(state), **where}


def queue_message(job_id: str, state: State, where: Mapping[str, str]) -> dict[str, Any]:
    """What a result queue receives: the Web API spec's result message."""
    status = "SUCCESS" if state is State.SUCCESS else "FAILED"
    return {"job_id": job_id, "status": status, **where}


def check_queue_name(name: str) -> None:
    """A name RabbitMQ accepts for a queue a client may declare, else UsageError."""
    if not name.strip() or len(name.encode("utf-8")) > _MAX_QUEUE_NAME_BYTES:
        raise UsageError(
            f"result_queue_name {name!r}: a queue name has 1 to {_MAX_QUEUE_NAME_BYTES} bytes"
        )
    if name.startswith("amq."):
        raise UsageError(f"result_queue_name {name!r}: names starting with 'amq.' are reserved")


# How a message reaches a queue: (broker URL, queue, message); raises when it did not.
Publish = Callable[[str, str, Mapping[str, Any]], None]


def _publish(url: str, queue_name: str, message: Mapping[str, Any]) -> None:
    publish_json(url, queue_name, message)


@dataclass(frozen=True, slots=True)
class _Report:
    result: PendingResult
    state: State


class ResultSender:
    """One background thread that delivers results in order, each with its retries.

    `amqp_url` is the broker of the result queues; without one, `accepts_queues` is False and
    a queue destination (owed from an earlier configuration) is given up on.
    """

    def __init__(
        self,
        pending: PendingResults,
        *,
        amqp_url: str | None = None,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        timeout: float = 10.0,
        publish: Publish = _publish,
    ):
        self.pending = pending
        self.amqp_url = amqp_url
        self._backoff = tuple(backoff)
        self._timeout = timeout
        self._publish = publish
        self._queue: queue.Queue[_Report | None] = queue.Queue()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ocrswarm-results", daemon=True)
        self.delivered = 0
        self.given_up = 0

    @property
    def accepts_queues(self) -> bool:
        """Whether results can be published to RabbitMQ queues."""
        return self.amqp_url is not None

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Stop after the delivery under way (waits for no retries); what is left stays
        pending on disk for the next start."""
        self._stopping.set()
        self._queue.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout=self._timeout + 1)

    def report(self, result: PendingResult, state: State) -> None:
        """Deliver the result of a finished job to each of its destinations; returns at once."""
        self._queue.put(_Report(result, state))

    def _run(self) -> None:
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                for destination in item.result.destinations:
                    outcome = self._deliver(client, item, destination)
                    if outcome is None:  # stopping: the rest stays pending
                        return
                    if outcome:
                        self.delivered += 1
                    else:
                        self.given_up += 1
                    self.pending.served(item.result.job_id, destination)

    def _deliver(
        self, client: httpx.Client, report: _Report, destination: Destination
    ) -> bool | None:
        """Whether the result reached `destination`; None when the server stops first."""
        result = report.result
        waits = (*self._backoff, None)
        for attempt, wait in enumerate(waits, start=1):
            problem = self._attempt(client, report, destination)
            if problem is None:
                return True
            log.warning(
                "result of job %s to %s %s, attempt %d: %s",
                result.job_id,
                destination.transport.value,
                destination.address,
                attempt,
                problem,
            )
            if wait is None:
                break
            if self._stopping.wait(wait):
                return None
        log.error(
            "result of job %s to %s %s given up (%s)",
            result.job_id,
            destination.transport.value,
            destination.address,
            report.state,
        )
        return False

    def _attempt(
        self, client: httpx.Client, report: _Report, destination: Destination
    ) -> str | None:
        """One try; None if it worked, else what went wrong."""
        result = report.result
        if destination.transport is Transport.CALLBACK:
            message = callback_message(result.job_id, report.state, result.where)
            try:
                response = client.post(destination.address, json=message)
            except httpx.HTTPError as error:
                return f"{type(error).__name__}: {error}"
            return None if response.status_code < 400 else f"HTTP {response.status_code}"
        if self.amqp_url is None:
            return "no RabbitMQ is configured on this server"
        try:
            self._publish(
                self.amqp_url,
                destination.address,
                queue_message(result.job_id, report.state, result.where),
            )
        except OcrswarmError as error:
            return str(error)
        return None


class PendingResults:
    """The results still owed, kept in a JSON file so a restarted server still sends them."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._entries: dict[str, PendingResult] = {}
        try:
            stored = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            stored = []
        for item in stored if isinstance(stored, list) else []:
            entry = _entry_from_json(item)
            if entry is not None:
                self._entries[entry.job_id] = entry

    def entries(self) -> list[PendingResult]:
        with self._lock:
            return list(self._entries.values())

    def add(self, entry: PendingResult) -> None:
        with self._lock:
            self._entries[entry.job_id] = entry
            self._save()

    def forget(self, job_id: str) -> None:
        """The job is gone (its workspace deleted with the store's rows): nothing is owed."""
        with self._lock:
            if self._entries.pop(job_id, None) is not None:
                self._save()

    def served(self, job_id: str, destination: Destination) -> None:
        """`destination` has had the job's result (or was given up on): no longer owed."""
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None:
                return
            rest = tuple(d for d in entry.destinations if d != destination)
            if rest:
                self._entries[job_id] = replace(entry, destinations=rest)
            else:
                del self._entries[job_id]
            self._save()

    def _save(self) -> None:
        document = [
            {
                "job_id": e.job_id,
                "workflow": e.workflow,
                "where": dict(e.where),
                "destinations": [
                    {"transport": d.transport.value, "address": d.address} for d in e.destinations
                ],
            }
            for e in self._entries.values()
        ]
        write_atomic(self._path, json.dumps(document).encode("utf-8"))


def _entry_from_json(item: Any) -> PendingResult | None:
    """An entry of the file; None for one that cannot be read."""
    try:
        destinations = tuple(
            Destination(Transport(d["transport"]), str(d["address"])) for d in item["destinations"]
        )
        where = {str(key): str(value) for key, value in dict(item["where"]).items()}
        return PendingResult(str(item["job_id"]), bool(item["workflow"]), where, destinations)
    except (KeyError, TypeError, ValueError):
        return None
