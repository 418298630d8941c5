"""The coordinator: claims page tasks for its local workers and reports what they did.

One loop, on behalf of N worker processes, until its workflow job is finished (`ocrswarm
run`) or until `stop()` (a server, which runs it in a thread):
- claims tasks from the store in batches, each worker slot under its own worker id, and
  keeps each worker's pipe filled a little ahead (about a second of work of the slowest
  step; one page for OCR), so that no worker waits for the coordinator, no page waits
  behind another while a worker is idle, and a worker's death strands few tasks;
- completes finished tasks in batches (one transaction each), which also queues the next
  steps of those pages, after one file-system sync that makes the batch's files durable
  (so no worker needs an fsync per file; workers that upload their outputs to the server
  need none); failures are reported one by one (they are rare);
- renews the leases of its workers by heartbeat, and expires other holders' dead leases;
- lets the METS writer register outputs as it sees fit;
- on a worker's death fails the page it was processing (retried per the attempt policy) and
  gives the rest of its batch back; on SIGINT/SIGTERM (in the main thread) or `stop()` stops
  claiming, lets the workers finish their current page (or kills them at a second signal or
  after a grace period), gives back every lease and flushes the METS writer; after a signal
  `run` raises `Interrupted`.
"""

from __future__ import annotations

import math
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

from ocrswarm.engine.files import sync_filesystem
from ocrswarm.engine.records import Progress, TaskLease, TaskResult
from ocrswarm.engine.states import State
from ocrswarm.engine.workers import (
    TaskDone,
    TaskFailed,
    WorkerEvent,
    WorkerLost,
    WorkerPool,
    WorkerSlot,
)
from ocrswarm.errors import OcrswarmError

_AHEAD_SECONDS = 1.0  # how much work to keep queued at each worker
_MAX_AHEAD = 256
_MAX_SPARE_SECONDS = 60.0  # pages slower than this get no spare task (see _spare)
_IDLE_POLL_SECONDS = 0.2  # how often to look for work when none was ready
_PROGRESS_SECONDS = 0.5


class Queue(Protocol):
    """The part of the store the coordinator drives."""

    def claim(
        self,
        worker_id: str,
        *,
        executables: Any = None,
        limit: int = 1,
        lease_seconds: float = 60,
    ) -> list[TaskLease]: ...

    def renew(self, worker_id: str, tokens: Any, *, lease_seconds: float = 60) -> set[str]: ...

    def complete(self, results: Any) -> list[bool]: ...

    def fail(
        self,
        task_id: int,
        token: str,
        error: str,
        traceback: str | None = None,
        *,
        retry: bool = True,
    ) -> State: ...

    def expire_leases(self, now: float | None = None) -> int: ...

    def release(self, worker_id: str) -> int: ...

    def progress(self, workflow_job_id: str) -> Progress: ...


class TaskSource(Protocol):
    """Where a coordinator's tasks come from, and who hears that each one is settled.

    The default claims from the store (StoreClaims); in distributed mode RabbitMQ
    deliveries are claimed by id (brokertasks.BrokerTasks), whose messages are
    acknowledged through `settled` and `released` once the store holds the outcome."""

    @property
    def wake_handle(self) -> int | None:
        """A file descriptor that becomes readable when new tasks may be ready, or None."""
        ...

    def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[TaskLease]: ...

    def settled(self, token: str, state: State) -> None:
        """The store recorded the outcome of the task under `token` (its new state)."""
        ...

    def released(self, worker_id: str) -> None:
        """The store took back every lease `worker_id` held."""
        ...

    def want(self, tasks: int) -> None:
        """How many tasks the coordinator would like to have at hand: those it keeps at its
        workers, and one more per worker process that a source handing tasks out ahead (a
        RabbitMQ prefetch) should hold ready for it."""
        ...

    def poll(self) -> bool:
        """Called every round; whether new tasks may be ready."""
        ...

    def close(self) -> None: ...


class StoreClaims:
    """The embedded task source: claims ready tasks from the store, best first."""

    wake_handle: int | None = None

    def __init__(self, store: Queue) -> None:
        self._store = store

    def claim(self, worker_id: str, limit: int, lease_seconds: float) -> list[TaskLease]:
        return self._store.claim(worker_id, limit=limit, lease_seconds=lease_seconds)

    def settled(self, token: str, state: State) -> None:
        pass

    def released(self, worker_id: str) -> None:
        pass

    def want(self, tasks: int) -> None:
        pass

    def poll(self) -> bool:
        return False

    def close(self) -> None:
        pass


class Interrupted(OcrswarmError):
    """The run was stopped by a signal; everything done so far is kept."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


@dataclass(frozen=True, slots=True)
class CoordinatorOptions:
    workers: int = field(default_factory=lambda: os.cpu_count() or 1)
    lease_seconds: float = 60.0
    page_timeout: float | None = None  # kill a worker whose page takes longer
    grace_seconds: float = 10.0  # on interrupt: how long workers may finish their page
    complete_batch: int = 512
    complete_delay: float = 0.1  # a finished task waits at most this long to be completed


class MetsFlusher(Protocol):
    """What the coordinator's loop asks of METS writing: register what is due (all of it
    when `force`). A MetsWriter, or a server's set of them, one per workspace."""

    def flush(self, *, force: bool = False) -> int: ...


class Coordinator:
    """Runs page tasks on local worker processes: those of one workflow job to its end (and
    whatever else is queued meanwhile), or, without a job, everything until `stop`."""

    def __init__(
        self,
        store: Queue,
        workflow_job_id: str | None,
        writer: MetsFlusher,
        options: CoordinatorOptions = CoordinatorOptions(),
        *,
        on_progress: Callable[[Progress], None] | None = None,
        pool: WorkerPool | None = None,
        source: TaskSource | None = None,
        name: str | None = None,
    ) -> None:
        """`workflow_job_id` None: serve until `stop()` (a server). `pool`: worker processes
        started early (they load their models meanwhile); by default the coordinator starts
        `options.workers` of them itself. `source`: where tasks come from (default: claims
        from `store`); the coordinator closes it when it stops. `name`: what its tasks'
        worker ids start with, `<name>/<slot>` (an `ocrswarm worker`'s registered id;
        default `host:pid:random`)."""
        self._store = store
        self._source: TaskSource = source or StoreClaims(store)
        self._job_id = workflow_job_id
        self._writer = writer
        self._options = options
        self._on_progress = on_progress
        self._run_id = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._pool = pool or WorkerPool(options.workers)
        self._results: list[TaskResult] = []
        self._written_to: set[Path] = set()  # workspaces the pending results wrote into
        self._oldest_result = 0.0
        self._nothing_ready_until = 0.0
        self._mean_seconds: dict[str, float] = {}  # per executable, a moving average
        self._next_heartbeat = 0.0
        self._next_expiry = 0.0
        self._next_progress = 0.0
        self._stopping = False
        self._signal: int | None = None
        self._abort = False
        self.discarded = 0  # results whose lease had been lost meanwhile

    def stop(self, *, at_once: bool = False) -> None:
        """Ask `run` to stop: after the pages under way (within the grace period), or at once.
        Callable from another thread or a signal handler; `run` then returns normally."""
        if self._stopping or at_once:
            self._abort = True
        self._stopping = True

    def in_flight(self) -> int:
        """How many page tasks the local workers hold now (callable from any thread)."""
        return sum(len(slot.in_flight) for slot in list(self._pool.slots))

    def workers_alive(self) -> int:
        """How many worker processes of the pool are alive now (callable from any thread)."""
        return sum(1 for slot in list(self._pool.slots) if slot.process.is_alive())

    def run(self) -> Progress | None:
        """Process until the workflow job is finished (its final progress) or until `stop`
        (None without a job); raises Interrupted when SIGINT/SIGTERM stopped it."""
        restore = self._catch_signals()
        try:
            if not self._pool.started:
                self._pool.start()
            try:
                progress = self._loop()
            except BaseException:
                self._shut_down(grace=0.0)
                raise
            self._shut_down(grace=self._options.grace_seconds)
        finally:
            restore()
        if self._signal is not None:
            raise Interrupted(self._signal)
        return progress

    # --- the loop ------------------------------------------------------------------------

    def _loop(self) -> Progress | None:
        now = time.monotonic()
        self._next_heartbeat = now + self._options.lease_seconds / 3
        self._next_expiry = now + self._options.lease_seconds
        while not self._stopping:
            self._fill_workers()
            timeout = self._options.complete_delay if self._results else _IDLE_POLL_SECONDS
            for event in self._pool.wait(timeout, wake=self._source.wake_handle):
                self._handle(event)
            if self._source.poll():
                self._nothing_ready_until = 0.0
            now = time.monotonic()
            if self._results and (
                len(self._results) >= self._options.complete_batch
                or now - self._oldest_result >= self._options.complete_delay
                or not self._in_flight()
            ):
                self._complete()
            self._writer.flush()
            self._keep_leases(now)
            if self._options.page_timeout is not None:
                self._pool.kill_overdue(self._options.page_timeout)
            if self._job_id is not None and (now >= self._next_progress or self._idle()):
                progress = self._store.progress(self._job_id)
                self._next_progress = now + _PROGRESS_SECONDS
                if self._on_progress:
                    self._on_progress(progress)
                if progress.finished and self._idle():
                    return progress
        return None if self._job_id is None else self._store.progress(self._job_id)

    def _fill_workers(self) -> None:
        if self._stopping:
            return
        ahead = self._ahead()
        self._source.want(self._pool.size * (ahead + self._spare()))
        for slot in self._pool.slots:
            if time.monotonic() < self._nothing_ready_until:
                return
            held = len(slot.in_flight)
            if held > ahead // 2:
                continue
            wanted = ahead - held
            leases = self._source.claim(self._worker_id(slot), wanted, self._options.lease_seconds)
            if len(leases) < wanted:
                self._nothing_ready_until = time.monotonic() + _IDLE_POLL_SECONDS
            self._pool.send(slot, leases)

    def _ahead(self) -> int:
        """Tasks to keep at each worker: about `_AHEAD_SECONDS` of work of the slowest step
        seen so far. One while durations are unknown or long: then a worker never waits with
        a page queued that an idle worker could take, and the round trip to the coordinator
        costs nothing next to the page."""
        if not self._mean_seconds:
            return 1
        slowest = max(self._mean_seconds.values())
        return max(1, min(_MAX_AHEAD, math.ceil(_AHEAD_SECONDS / max(slowest, 1e-4))))

    def _spare(self) -> int:
        """Tasks per worker a source should hold ready beyond those at the workers: one,
        so that when a page ends the next is claimed from what the source holds, not after
        the page's completion, its acknowledgement and the next delivery (a tenth of a
        second, which cost a page of one second 10 %). None while durations are unknown or
        over `_MAX_SPARE_SECONDS`: a message held that long could outlast RabbitMQ's
        consumer timeout, and there the round trip costs nothing."""
        if not self._mean_seconds or max(self._mean_seconds.values()) > _MAX_SPARE_SECONDS:
            return 0
        return 1

    def _handle(self, event: WorkerEvent) -> None:
        if isinstance(event, TaskDone):
            if not self._results:
                self._oldest_result = time.monotonic()
            if not self._pool.outputs_pushed:
                self._written_to.add(event.task.workspace_dir)
            self._results.append(TaskResult(event.task.task_id, event.task.token, event.outputs))
            executable, seconds = event.task.executable, event.seconds
            mean = self._mean_seconds.get(executable)
            self._mean_seconds[executable] = seconds if mean is None else 0.9 * mean + 0.1 * seconds
        elif isinstance(event, TaskFailed):
            state = self._store.fail(
                event.task.task_id,
                event.task.token,
                event.error,
                event.traceback,
                retry=event.retry,
            )
            self._source.settled(event.task.token, state)
            self._nothing_ready_until = 0.0
        else:
            self._bury(event)

    def _bury(self, lost: WorkerLost) -> None:
        """A worker ended: its current page failed (unless the run is stopping), the rest
        of its tasks go back to the queue. Finished results go in first: giving back the
        slot's leases would otherwise give back those tasks too."""
        self._complete()
        if lost.current is not None:
            state = self._store.fail(lost.current.task_id, lost.current.token, lost.message, None)
            self._source.settled(lost.current.token, state)
        self._store.release(self._worker_id_of(lost.slot))
        self._source.released(self._worker_id_of(lost.slot))
        self._nothing_ready_until = 0.0

    def _complete(self) -> None:
        """Record the finished tasks, once their files are durable (one sync per batch)."""
        if not self._results:
            return
        for directory in self._written_to:
            sync_filesystem(directory)
        self._written_to.clear()
        accepted = self._store.complete(self._results)
        self.discarded += accepted.count(False)
        for result in self._results:
            self._source.settled(result.token, State.SUCCESS)
        self._results = []
        self._nothing_ready_until = 0.0  # their pages' next steps may be ready now

    def _keep_leases(self, now: float) -> None:
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self._options.lease_seconds / 3
            self._complete()  # so that every lease still held is in some worker's hands
            for slot in self._pool.slots:
                tokens = list(slot.in_flight)
                if tokens:
                    self._store.renew(
                        self._worker_id(slot), tokens, lease_seconds=self._options.lease_seconds
                    )
        if now >= self._next_expiry:
            self._next_expiry = now + self._options.lease_seconds
            if self._store.expire_leases():
                self._nothing_ready_until = 0.0

    def _in_flight(self) -> int:
        return sum(len(slot.in_flight) for slot in self._pool.slots)

    def _idle(self) -> bool:
        return not self._results and not self._in_flight()

    def _worker_id(self, slot: WorkerSlot) -> str:
        return self._worker_id_of(slot.index)

    def _worker_id_of(self, index: int) -> str:
        return f"{self._run_id}/{index}"

    # --- stopping --------------------------------------------------------------------------

    def _shut_down(self, *, grace: float) -> None:
        """Stop the workers, keep what they finished, give back every lease, flush the METS."""
        try:
            events = self._pool.stop(grace=grace, abort=lambda: self._abort)
            for event in events:
                if isinstance(event, WorkerLost):
                    continue  # released below, all at once
                self._handle(event)
            self._complete()
        finally:
            self._pool.close()
            try:
                for index in range(self._pool.size):
                    self._store.release(self._worker_id_of(index))
                    self._source.released(self._worker_id_of(index))
                self._writer.flush(force=True)
            finally:
                self._source.close()

    def _catch_signals(self) -> Callable[[], None]:
        """SIGINT/SIGTERM: the first stops the run gently, the second at once."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def stop(signum: int, _frame: FrameType | None) -> None:
            self._signal = signum
            self.stop()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}

        def restore() -> None:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

        return restore
