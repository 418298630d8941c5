"""The dispatcher: the server's side of RabbitMQ. Ready page tasks go to their processor's
queue; leases of vanished workers are taken back.

A loop in its own thread: take ready tasks from the store (marking them published),
publish them (a batch is one AMQP transaction), unmark what the broker did not take. The
store stays the truth; see publication.py for why every QUEUED task is unmarked (and so
sent again) when the dispatcher starts and after a database error. A broker or database
outage costs a pause with backoff, never a task: the loop keeps going until it is stopped.

Tasks become ready when workers complete their pages' earlier steps, in the shared
database, which tells nobody: the dispatcher looks every 50 ms, and every 0.2 s once it
found nothing for two seconds (a submission on this server wakes it at once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from ocrswarm.engine.amqp import OutgoingMessage, Publisher, PublishError
from ocrswarm.engine.publication import ReadyTask
from ocrswarm.engine.store import Store
from ocrswarm.errors import OcrswarmError

log = logging.getLogger(__name__)

_MAX_PAUSE = 10.0
_QUIET_SECONDS = 2.0  # nothing found for this long: look less often (_QUIET_POLL_SECONDS)
_QUIET_POLL_SECONDS = 0.2


def processing_message(task: ReadyTask, *, created: float | None = None) -> dict[str, Any]:
    """The OCR-D processing message of one page task: only the schema's fields (our task id
    travels beside it, in the message properties: see amqp.TASK_ID_HEADER)."""
    return {
        "job_id": task.job_id,
        "processor_name": task.executable,
        "path_to_mets": str(task.mets_path),
        "input_file_grps": list(task.input_file_grps),
        "output_file_grps": list(task.output_file_grps),
        "page_id": task.page_id,
        "parameters": dict(task.parameters),
        "created_time": int(time.time() if created is None else created),
    }


class Dispatcher:
    """Publishes ready page tasks to RabbitMQ and expires dead leases, until `stop`."""

    def __init__(
        self,
        store: Store,
        url: str,
        *,
        batch: int = 500,
        idle_seconds: float = 0.05,
        expiry_seconds: float = 5.0,
    ) -> None:
        self._store = store
        self._publisher = Publisher(url)
        self._batch = batch
        self._idle_seconds = idle_seconds
        self._expiry_seconds = expiry_seconds
        self._stopping = threading.Event()
        self._wake = threading.Event()
        self._pause = 0.0
        self.published = 0  # messages confirmed by the broker, for tests and metrics

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        """Something may have become ready (a submission): look now (any thread)."""
        self._wake.set()

    def run(self) -> None:
        """Dispatch until `stop` (call it in a thread of its own)."""
        recover = True  # a predecessor may have marked tasks the broker never confirmed
        next_expiry = 0.0
        last_found = time.monotonic()
        try:
            while not self._stopping.is_set():
                busy = False
                try:
                    if recover:
                        unmarked = self._store.unpublish_all()
                        if unmarked:
                            log.info("sending %d queued page tasks (again)", unmarked)
                        recover = False
                    if time.monotonic() >= next_expiry:
                        self._store.expire_leases()
                        next_expiry = time.monotonic() + self._expiry_seconds
                    found = self._dispatch_once()
                    busy = found == self._batch  # a full batch: more may wait
                    if found:
                        last_found = time.monotonic()
                    self._pause = 0.0
                except PublishError as error:
                    self._trouble(f"RabbitMQ: {error}")
                except OcrswarmError as error:
                    recover = True
                    self._trouble(f"the store: {error}")
                except Exception:
                    recover = True
                    log.exception("the dispatcher failed; going on")
                    self._trouble("an unexpected error")
                if not busy:
                    self._publisher.process_events()
                    quiet = time.monotonic() - last_found > _QUIET_SECONDS
                    idle = max(self._idle_seconds, _QUIET_POLL_SECONDS) if quiet else None
                    self._wake.wait(self._pause or idle or self._idle_seconds)
                    self._wake.clear()
        finally:
            self._publisher.close()

    def _dispatch_once(self) -> int:
        """Publish one batch of ready tasks; how many."""
        ready = self._store.take_ready(self._batch)
        if ready:
            self._publish(ready)
        return len(ready)

    def _publish(self, ready: Sequence[ReadyTask]) -> None:
        created = time.time()
        messages = [
            OutgoingMessage(
                task.executable,
                processing_message(task, created=created),
                task_id=task.task_id,
                attempt=task.attempt,
            )
            for task in ready
        ]
        try:
            self.published += self._publisher.publish(messages)
        except PublishError as error:
            self.published += error.published
            self._store.unpublish([task.task_id for task in ready[error.published :]])
            raise

    def _trouble(self, what: str) -> None:
        self._pause = min(_MAX_PAUSE, max(0.5, self._pause * 2))
        log.warning("dispatching paused %.1f s: %s", self._pause, what)
