"""Local worker processes, as the coordinator sees them: a pool that feeds, watches and
replaces them.

Each worker is a process of its own (started by "spawn": forking a coordinator that already
runs threads is unsafe) with `OMP_THREAD_LIMIT=1`, because Tesseract must run one
single-threaded process per core; what runs inside it is in workerprocess.py. The pool
sends batches of claimed tasks down a pipe, turns the answers into events, and notices a
worker's death by its process sentinel. The page the dead worker was processing is read
from the integer it shared (`WorkerLost.current`: that attempt failed); the rest of its
tasks are given back (`unstarted`; a finished page whose answer died with the worker is
simply done again), and a new worker takes the slot.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Any

from ocrswarm.engine.records import FileRef, TaskLease
from ocrswarm.engine.workerprocess import IDLE, STOP, Answer, Work, worker_main
from ocrswarm.errors import OcrswarmError, UsageError

if TYPE_CHECKING:  # httpx is imported only by a worker that transfers files
    from ocrswarm.engine.transfer import RemoteFiles

_CONTEXT = multiprocessing.get_context("spawn")


@dataclass(frozen=True, slots=True)
class TaskDone:
    task: TaskLease
    outputs: tuple[FileRef, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class TaskFailed:
    task: TaskLease
    error: str
    traceback: str | None
    retry: bool  # False when trying again cannot help (bad input data, processor won't start)


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """A worker process ended while it held tasks (or unexpectedly while idle)."""

    slot: int
    reason: str  # "worker died with signal 9 (SIGKILL)"
    current: TaskLease | None  # the page it was processing: count it as a failed attempt
    unstarted: tuple[TaskLease, ...]  # queued behind it: give these back

    @property
    def message(self) -> str:
        where = f" while processing {self.current.page_id}" if self.current else ""
        return f"{self.reason}{where}"


WorkerEvent = TaskDone | TaskFailed | WorkerLost


class WorkersFailingError(OcrswarmError):
    """Worker processes keep dying before they finish anything: something is broken."""


# --- the coordinator's side ----------------------------------------------------------------


@dataclass(slots=True, eq=False)
class WorkerSlot:
    """One worker process and the tasks it holds, oldest first."""

    index: int
    process: BaseProcess
    inbox: Connection  # coordinator -> worker
    outbox: Connection  # worker -> coordinator
    current_task: ctypes.c_int64  # the id of the task it is processing, written by the worker
    in_flight: dict[str, TaskLease] = field(default_factory=dict)  # by lease token
    watched_task: int = IDLE  # `current_task` when `kill_overdue` last looked
    watched_since: float = 0.0  # since when it has been that
    kill_reason: str | None = None
    at_eof: bool = False
    stopping: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid


class WorkerPool:
    """N local worker processes; a dead one is replaced, its tasks reported back."""

    def __init__(
        self,
        size: int,
        *,
        warm_up: Sequence[tuple[str, Mapping[str, Any]]] = (),
        extra_env: Mapping[str, str] | None = None,
        remote_files: RemoteFiles | None = None,
    ) -> None:
        """`warm_up`: (executable, parameters) of the processors each worker should construct
        as soon as it starts, so that models load while the coordinator is still busy.
        `remote_files`: the workers fetch each page's files from the server and push its
        outputs back (a machine without the shared directory)."""
        if size < 1:
            raise UsageError(f"the number of workers must be at least 1, not {size}")
        self.size = size
        self._warm_up = [(executable, dict(parameters)) for executable, parameters in warm_up]
        self._extra_env = dict(extra_env or {})
        self._remote_files = remote_files
        self._slots: list[WorkerSlot] = []
        self._deaths_while_idle = 0  # since the last answer: workers that cannot even start
        self._closing = False

    @property
    def slots(self) -> Sequence[WorkerSlot]:
        return self._slots

    @property
    def outputs_pushed(self) -> bool:
        """Whether the workers upload every output to the server, which makes it durable
        before it accepts it (HTTP file transfer): nothing is left here to sync."""
        return self._remote_files is not None

    @property
    def started(self) -> bool:
        return bool(self._slots) or self._closing

    def start(self) -> None:
        self._slots = [self._spawn(index) for index in range(self.size)]

    def send(self, slot: WorkerSlot, tasks: Sequence[TaskLease]) -> None:
        """Queue `tasks` at a worker; it processes them in order after what it already has."""
        if not tasks:
            return
        for task in tasks:
            slot.in_flight[task.token] = task
        # If it died, its sentinel reports it, with these tasks as unstarted.
        with contextlib.suppress(OSError):
            slot.inbox.send([Work.of(task) for task in tasks])

    def wait(self, timeout: float, *, wake: int | None = None) -> list[WorkerEvent]:
        """Answers and deaths that arrived within `timeout` seconds (at most that long, or
        until the file descriptor `wake` becomes readable: the caller reads it)."""
        handles: dict[Any, WorkerSlot] = {}
        for slot in self._slots:
            if not slot.at_eof:
                handles[slot.outbox] = slot
            handles[slot.process.sentinel] = slot
        events: list[WorkerEvent] = []
        dead: list[WorkerSlot] = []
        waitables = list(handles) if wake is None else [*handles, wake]
        for handle in wait(waitables, timeout):
            if wake is not None and handle == wake and handle not in handles:
                continue
            slot = handles[handle]
            if handle is slot.outbox:
                events.extend(self._drain(slot))
            elif slot not in dead:
                dead.append(slot)
        for slot in dead:
            events.extend(self._drain(slot))
            events.append(self._bury(slot))
        return events

    def kill_overdue(self, limit: float) -> None:
        """Kill every worker that has been processing the same page for over `limit` s.

        Timed from when the worker itself started the page (it may still have been busy
        with earlier ones, or starting up, when the page was sent)."""
        now = time.monotonic()
        for slot in self._slots:
            busy_with = slot.current_task.value
            if busy_with != slot.watched_task:
                slot.watched_task, slot.watched_since = busy_with, now
            elif (
                busy_with != IDLE and slot.kill_reason is None and now - slot.watched_since > limit
            ):
                self.kill(slot, f"page took longer than {limit:g} s; worker killed")

    def kill(self, slot: WorkerSlot, reason: str) -> None:
        """End a worker now (a page ran too long); `wait` reports it with this reason."""
        slot.kill_reason = reason
        if slot.process.pid is not None and slot.process.exitcode is None:
            os.kill(slot.process.pid, signal.SIGKILL)

    def stop(self, *, grace: float, abort: Callable[[], bool] = lambda: False) -> list[WorkerEvent]:
        """Ask every worker to stop after its current page; kill those still busy after
        `grace` seconds, or as soon as `abort()` says so. Returns the last answers and a
        `WorkerLost` for every worker, whose unfinished tasks are all `unstarted`: an
        interrupted page is not the page's fault."""
        self._closing = True
        for slot in self._slots:
            slot.stopping = True
            with contextlib.suppress(OSError):
                slot.inbox.send(STOP)
        deadline = time.monotonic() + grace
        killed = False
        events: list[WorkerEvent] = []
        while self._slots:
            if not killed and (abort() or time.monotonic() >= deadline):
                for slot in self._slots:
                    self.kill(slot, "stopped: the run was interrupted")
                killed = True
            events.extend(self.wait(0.1))
        return events

    def close(self) -> None:
        """Kill whatever is left (after `stop`, nothing is)."""
        self._closing = True
        for slot in self._slots:
            self.kill(slot, "closed")
            slot.process.join(5)
        self._slots = []

    def _spawn(self, index: int) -> WorkerSlot:
        to_worker_r, to_worker_w = _CONTEXT.Pipe(duplex=False)
        from_worker_r, from_worker_w = _CONTEXT.Pipe(duplex=False)
        current_task = _CONTEXT.RawValue(ctypes.c_int64, IDLE)
        process = _CONTEXT.Process(
            target=worker_main,
            args=(
                to_worker_r,
                from_worker_w,
                current_task,
                self._warm_up,
                self._extra_env,
                self._remote_files,
            ),
            name=f"ocrswarm-worker-{index}",
            daemon=True,
        )
        process.start()
        to_worker_r.close()
        from_worker_w.close()
        return WorkerSlot(index, process, to_worker_w, from_worker_r, current_task)

    def _drain(self, slot: WorkerSlot) -> list[WorkerEvent]:
        events: list[WorkerEvent] = []
        try:
            while not slot.at_eof and slot.outbox.poll():
                events.extend(self._answer(slot, answer) for answer in slot.outbox.recv())
        except (EOFError, OSError):
            slot.at_eof = True
        return events

    def _answer(self, slot: WorkerSlot, answer: Answer) -> WorkerEvent:
        task = slot.in_flight.pop(answer.token)
        self._deaths_while_idle = 0
        if answer.error is None:
            return TaskDone(task, answer.files(), answer.seconds)
        return TaskFailed(task, answer.error, answer.traceback, answer.retry)

    def _bury(self, slot: WorkerSlot) -> WorkerLost:
        slot.process.join()
        busy_with = slot.current_task.value
        graceful = slot.stopping  # an interrupted run: no page is to blame
        current = next(
            (t for t in slot.in_flight.values() if t.task_id == busy_with and not graceful), None
        )
        reason = slot.kill_reason or _exit_reason(slot.process.exitcode)
        lost = WorkerLost(
            slot.index,
            reason,
            current,
            tuple(t for t in slot.in_flight.values() if t is not current),
        )
        slot.inbox.close()
        slot.outbox.close()
        position = self._slots.index(slot)
        if self._closing:
            del self._slots[position]
            return lost
        if current is None:
            self._deaths_while_idle += 1
        if self._deaths_while_idle > 3 * self.size:
            del self._slots[position]
            raise WorkersFailingError(
                f"worker processes keep dying before they start a page (last: {lost.message})"
            )
        self._slots[position] = self._spawn(slot.index)
        return lost


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = "unknown signal"
        return f"worker died with signal {-exitcode} ({name})"
    return f"worker exited with code {exitcode}"
