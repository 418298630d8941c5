"""Local worker processes: resident processors fed with page tasks over a pipe.

Each worker is a process of its own (started by "spawn": forking a coordinator that already
runs threads is unsafe) with `OMP_THREAD_LIMIT=1`, because Tesseract must run one
single-threaded process per core. A worker keeps one processor instance per executable and
parameters it has seen, so a model is loaded once per worker, not once per page.

The coordinator sends batches of claimed tasks (`TaskLease`, self-contained); the worker
answers each task with a `_Done` or `_Failed`, sent at once for slow pages and gathered for
up to `_ANSWER_DELAY` for fast ones (fewer messages, fewer wake-ups of the coordinator).
The id of the task a worker is busy with sits in a shared integer, so when a worker dies
the page it was processing is known exactly: that one is reported as failed
(`WorkerLost.current`), the rest of its tasks as never done (a finished page whose answer
died with the worker is simply done again), and a new worker takes the slot. A reader
thread in the worker notices at once when the coordinator is gone (EOF on the pipe) and
ends the process, so a `kill -9` of the run leaves no orphans.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import queue
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

from ocrswarm.engine.files import page_job, resolve_href
from ocrswarm.engine.records import TaskLease
from ocrswarm.engine.tools import processor_class
from ocrswarm.errors import FormatError, MetsError, OcrswarmError, UsageError
from ocrswarm.formats.mets import check_file_grp_name, check_id
from ocrswarm.processors.processor import OutputFile, Processor

_CONTEXT = multiprocessing.get_context("spawn")
_STOP = "stop"
_ANSWER_DELAY = 0.05  # seconds a fast page's answer may wait to travel with others
_SLOW_PAGE = 0.005  # a page that took this long is answered at once
_IDLE = 0  # the shared current-task value of a worker between tasks
_MAX_RESIDENT_PROCESSORS = 8
_EXIT_ORPHANED = 3  # the coordinator went away


@dataclass(frozen=True, slots=True)
class TaskDone:
    task: TaskLease
    outputs: tuple[OutputFile, ...]
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
    watched_task: int = _IDLE  # `current_task` when `kill_overdue` last looked
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
    ) -> None:
        """`warm_up`: (executable, parameters) of the processors each worker should construct
        as soon as it starts, so that models load while the coordinator is still busy."""
        if size < 1:
            raise UsageError(f"the number of workers must be at least 1, not {size}")
        self.size = size
        self._warm_up = [(executable, dict(parameters)) for executable, parameters in warm_up]
        self._extra_env = dict(extra_env or {})
        self._slots: list[WorkerSlot] = []
        self._deaths_while_idle = 0  # since the last answer: workers that cannot even start
        self._closing = False

    @property
    def slots(self) -> Sequence[WorkerSlot]:
        return self._slots

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
            slot.inbox.send(list(tasks))

    def wait(self, timeout: float) -> list[WorkerEvent]:
        """Answers and deaths that arrived within `timeout` seconds (at most that long)."""
        handles: dict[Any, WorkerSlot] = {}
        for slot in self._slots:
            if not slot.at_eof:
                handles[slot.outbox] = slot
            handles[slot.process.sentinel] = slot
        events: list[WorkerEvent] = []
        dead: list[WorkerSlot] = []
        for handle in wait(list(handles), timeout):
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
                busy_with != _IDLE and slot.kill_reason is None and now - slot.watched_since > limit
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
                slot.inbox.send(_STOP)
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
        current_task = _CONTEXT.RawValue(ctypes.c_int64, _IDLE)
        process = _CONTEXT.Process(
            target=_worker_main,
            args=(to_worker_r, from_worker_w, current_task, self._warm_up, self._extra_env),
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

    def _answer(self, slot: WorkerSlot, message: _Done | _Failed) -> WorkerEvent:
        task = slot.in_flight.pop(message.token)
        self._deaths_while_idle = 0
        if isinstance(message, _Done):
            return TaskDone(task, message.outputs, message.seconds)
        return TaskFailed(task, message.error, message.traceback, message.retry)

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


# --- the worker's side ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Done:
    token: str
    outputs: tuple[OutputFile, ...]
    seconds: float


@dataclass(frozen=True, slots=True)
class _Failed:
    token: str
    error: str
    traceback: str | None
    retry: bool


def _worker_main(
    inbox: Connection,
    outbox: Connection,
    current_task: ctypes.c_int64,
    warm_up: Sequence[tuple[str, Mapping[str, Any]]],
    extra_env: Mapping[str, str],
) -> None:
    """A worker process: process the tasks it is sent, in order, until told to stop."""
    os.environ.update(extra_env)
    os.environ["OMP_THREAD_LIMIT"] = "1"  # before any processor loads Tesseract
    # Ctrl-C and a stop request reach the whole process group; the coordinator handles them
    # (it lets the page under way finish). It ends a worker with SIGKILL when it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batches: queue.SimpleQueue[list[TaskLease] | None] = queue.SimpleQueue()
    stopping = threading.Event()
    threading.Thread(target=_read, args=(inbox, batches, stopping), daemon=True).start()
    processors = ResidentProcessors()
    for executable, parameters in warm_up:
        processors.warm_up(executable, parameters)
    answers = _Answers(outbox)
    todo: deque[TaskLease] = deque()
    try:
        while not stopping.is_set():
            if not todo:
                try:
                    batch = batches.get_nowait()
                except queue.Empty:
                    answers.send()  # nothing else to do now: report what is done
                    batch = batches.get()
                if batch is None:
                    break
                todo.extend(batch)
                continue
            task = todo.popleft()
            current_task.value = task.task_id
            answer = processors.process(task)
            current_task.value = _IDLE
            answers.add(answer)
    finally:
        answers.send()
        processors.close()


class _Answers:
    """Answers on their way to the coordinator: a slow page's at once, fast ones gathered."""

    def __init__(self, outbox: Connection) -> None:
        self._outbox = outbox
        self._pending: list[_Done | _Failed] = []
        self._oldest = 0.0

    def add(self, answer: _Done | _Failed) -> None:
        now = time.monotonic()
        if not self._pending:
            self._oldest = now
        self._pending.append(answer)
        slow = not isinstance(answer, _Done) or answer.seconds >= _SLOW_PAGE
        if slow or now - self._oldest >= _ANSWER_DELAY:
            self.send()

    def send(self) -> None:
        if not self._pending:
            return
        try:
            self._outbox.send(self._pending)
        except OSError:
            os._exit(_EXIT_ORPHANED)
        self._pending = []


def _read(
    inbox: Connection, batches: queue.SimpleQueue[list[TaskLease] | None], stopping: threading.Event
) -> None:
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            os._exit(_EXIT_ORPHANED)  # the coordinator is gone; nobody would take our answers
        if message == _STOP:
            stopping.set()
            batches.put(None)
            return
        batches.put(message)


@dataclass(frozen=True, slots=True)
class _Broken:
    """A processor that could not be constructed: every page it gets fails with this."""

    error: str
    traceback: str


class ResidentProcessors:
    """One processor instance per (executable, parameters), kept for the worker's lifetime."""

    def __init__(self) -> None:
        self._instances: dict[tuple[str, str], Processor] = {}
        self._broken: dict[tuple[str, str], _Broken] = {}

    def warm_up(self, executable: str, parameters: Mapping[str, Any]) -> None:
        """Construct a processor (loading its model) before its first page arrives."""
        self._processor(executable, parameters)

    def process(self, task: TaskLease) -> _Done | _Failed:
        """Run one task; any exception becomes a failure answer, never the worker's death."""
        started = time.perf_counter()
        processor = self._processor(task.executable, task.parameters)
        if isinstance(processor, _Broken):
            return _Failed(task.token, processor.error, processor.traceback, retry=False)
        try:
            job = page_job(task.workspace_dir, task.page_id, task.inputs, task.output_file_grps)
            outputs = tuple(processor.process_page(job))
            check_outputs(task, outputs)
        except Exception as error:
            return _Failed(
                task.token,
                describe_error(error),
                traceback.format_exc(),
                retry=not isinstance(error, FormatError),
            )
        return _Done(task.token, outputs, time.perf_counter() - started)

    def close(self) -> None:
        for instance in self._instances.values():
            with contextlib.suppress(Exception):  # the worker is ending; nobody to report to
                instance.close()
        self._instances.clear()

    def _processor(self, executable: str, parameters: Mapping[str, Any]) -> Processor | _Broken:
        key = (executable, json.dumps(parameters, sort_keys=True, default=str))
        known = self._instances.get(key) or self._broken.get(key)
        if known is not None:
            return known
        try:
            instance = processor_class(executable)(parameters)
        except Exception as error:
            broken = _Broken(
                f"cannot start {executable}: {describe_error(error)}", traceback.format_exc()
            )
            self._broken[key] = broken
            return broken
        if len(self._instances) >= _MAX_RESIDENT_PROCESSORS:
            oldest = next(iter(self._instances))
            self._instances.pop(oldest).close()
        self._instances[key] = instance
        return instance


def check_outputs(task: TaskLease, outputs: Sequence[OutputFile]) -> None:
    """Refuse what the METS writer must never see: foreign fileGrps or pages, duplicate IDs,
    files that were not written. Checked here, where the page can still fail."""
    seen: set[str] = set()
    for output in outputs:
        where = f"{task.executable} returned output file {output.file_id!r}"
        if output.file_grp not in task.output_file_grps:
            raise MetsError(
                f"{where} in fileGrp {output.file_grp!r}, which is not an output fileGrp "
                f"of this step ({', '.join(task.output_file_grps)})"
            )
        if output.page_id != task.page_id:
            raise MetsError(f"{where} for page {output.page_id!r}, not {task.page_id!r}")
        if output.file_id in seen:
            raise MetsError(f"{where} twice")
        seen.add(output.file_id)
        check_id(output.file_id, "file ID")
        check_file_grp_name(output.file_grp)
        if not resolve_href(task.workspace_dir, output.href).is_file():
            raise MetsError(f"{where} at {output.href!r}, but wrote nothing there")


def describe_error(error: BaseException) -> str:
    """A page's error in one message: ours as they are, others with their type."""
    if isinstance(error, OcrswarmError):
        return str(error)
    return f"{type(error).__name__}: {error}"
