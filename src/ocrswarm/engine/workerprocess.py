"""What runs inside a local worker process, and what travels over its pipes.

A worker keeps one processor instance per executable and parameters it has seen, so a model
is loaded once per worker, not once per page. It processes the `Work` it is sent in order
and answers each with an `Answer`: at once after a slow page, gathered for up to
`ANSWER_DELAY` after fast ones (fewer messages, fewer wake-ups of the coordinator), and
never held back while a page that is probably slow runs. The id
of the task it is busy with sits in an integer shared with the coordinator, which is how
a worker's death is blamed on exactly the page that caused it.

Both messages are plain tuples: pickling dataclasses costs more than the dummy processor's
whole page, and the coordinator handles thousands of them a second.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import queue
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from ocrswarm.engine.files import page_job
from ocrswarm.engine.records import FileRef, TaskLease
from ocrswarm.engine.tools import processor_class
from ocrswarm.errors import FormatError, OcrswarmError
from ocrswarm.processors.processor import OutputFile, Processor
from ocrswarm.processors.processor import check_outputs as check_page_outputs

if TYPE_CHECKING:  # imported by the worker only when it transfers files (httpx is heavy)
    from ocrswarm.engine.transfer import FileTransfer, RemoteFiles

STOP = "stop"
IDLE = 0  # the shared current-task value of a worker between tasks
EXIT_ORPHANED = 3  # the exit code of a worker whose coordinator went away
ANSWER_DELAY = 0.05  # seconds a fast page's answer may wait to travel with others
_SLOW_PAGE = 0.005  # a page that took this long is answered at once
_MAX_RESIDENT_PROCESSORS = 8


class Work(NamedTuple):
    """A claimed task as a worker gets it: what it needs of the lease, as plain values."""

    task_id: int
    token: str
    executable: str
    parameters: Mapping[str, Any]
    page_id: str
    workspace_id: str
    workspace_dir: str
    inputs: tuple[tuple[str, str, str, str], ...]  # (fileGrp, ID, MIME type, href)
    output_file_grps: tuple[str, ...]

    @classmethod
    def of(cls, lease: TaskLease) -> Work:
        return cls(
            lease.task_id,
            lease.token,
            lease.executable,
            lease.parameters,
            lease.page_id,
            lease.workspace_id,
            str(lease.workspace_dir),
            tuple((f.file_grp, f.file_id, f.mimetype, f.href) for f in lease.inputs),
            lease.output_file_grps,
        )


class Answer(NamedTuple):
    """How a task went: `error` None means success, with `outputs` to register."""

    token: str
    seconds: float
    outputs: tuple[tuple[str, str, str, str, str], ...]  # (fileGrp, ID, MIME type, href, page)
    error: str | None = None
    traceback: str | None = None
    retry: bool = True  # False when trying again cannot help (bad data, processor won't start)

    def files(self) -> tuple[FileRef, ...]:
        return tuple(FileRef(*output) for output in self.outputs)


def worker_main(
    inbox: Connection,
    outbox: Connection,
    current_task: ctypes.c_int64,
    warm_up: Sequence[tuple[str, Mapping[str, Any]]],
    extra_env: Mapping[str, str],
    remote_files: RemoteFiles | None = None,
) -> None:
    """A worker process: process the work it is sent, in order, until told to stop.
    `remote_files`: the files are not here but on the server (HTTP file transfer)."""
    os.environ.update(extra_env)
    os.environ["OMP_THREAD_LIMIT"] = "1"  # before any processor loads Tesseract
    # Ctrl-C and a stop request reach the whole process group; the coordinator handles them
    # (it lets the page under way finish). It ends a worker with SIGKILL when it must.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    batches: queue.SimpleQueue[list[Work] | None] = queue.SimpleQueue()
    stopping = threading.Event()
    threading.Thread(target=_read, args=(inbox, batches, stopping), daemon=True).start()
    processors = ResidentProcessors(remote_files.open() if remote_files is not None else None)
    for executable, parameters in warm_up:
        processors.warm_up(executable, parameters)
    answers = _Answers(outbox)
    todo: deque[Work] = deque()
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
            work = todo.popleft()
            if processors.expected_seconds(work) >= _SLOW_PAGE:
                answers.send()  # do not hold finished pages back while a slow one runs
            current_task.value = work.task_id
            answer = processors.process(work)
            current_task.value = IDLE
            answers.add(answer)
    finally:
        answers.send()
        processors.close()


def _read(
    inbox: Connection, batches: queue.SimpleQueue[list[Work] | None], stopping: threading.Event
) -> None:
    """The reader thread: work into the queue; at EOF the coordinator is gone, and so are we."""
    while True:
        try:
            message = inbox.recv()
        except (EOFError, OSError):
            os._exit(EXIT_ORPHANED)  # nobody would take our answers
        if message == STOP:
            stopping.set()
            batches.put(None)
            return
        batches.put(message)


class _Answers:
    """Answers on their way to the coordinator: a slow page's at once, fast ones gathered."""

    def __init__(self, outbox: Connection) -> None:
        self._outbox = outbox
        self._pending: list[Answer] = []
        self._oldest = 0.0

    def add(self, answer: Answer) -> None:
        now = time.monotonic()
        if not self._pending:
            self._oldest = now
        self._pending.append(answer)
        slow = answer.error is not None or answer.seconds >= _SLOW_PAGE
        if slow or now - self._oldest >= ANSWER_DELAY:
            self.send()

    def send(self) -> None:
        if not self._pending:
            return
        try:
            self._outbox.send(self._pending)
        except OSError:
            os._exit(EXIT_ORPHANED)
        self._pending = []


@dataclass(frozen=True, slots=True)
class _Broken:
    """A processor that could not be constructed: every page it gets fails with this."""

    error: str
    traceback: str


class ResidentProcessors:
    """One processor instance per (executable, parameters), kept for the worker's lifetime.

    With a `transfer` (a worker without the shared directory) each page's input files are
    first fetched from the server into a local mirror, and its outputs pushed back before
    the page counts as done; a transfer that fails fails the page, like any other error."""

    def __init__(self, transfer: FileTransfer | None = None) -> None:
        self._transfer = transfer
        self._instances: dict[tuple[str, str], Processor] = {}
        self._broken: dict[tuple[str, str], _Broken] = {}
        self._seconds: dict[tuple[str, str], float] = {}  # how long each one's last page took

    def expected_seconds(self, work: Work) -> float:
        """How long `work` will probably take: as long as its processor's last page took
        (never seen: long)."""
        return self._seconds.get(self._key(work.executable, work.parameters), float("inf"))

    def warm_up(self, executable: str, parameters: Mapping[str, Any]) -> None:
        """Construct a processor (loading its model) before its first page arrives."""
        self._processor(executable, parameters)

    def process(self, work: Work) -> Answer:
        """Run one task; any exception becomes a failure answer, never the worker's death."""
        started = time.perf_counter()
        processor = self._processor(work.executable, work.parameters)
        if isinstance(processor, _Broken):
            return Answer(work.token, 0.0, (), processor.error, processor.traceback, retry=False)
        try:
            directory = Path(work.workspace_dir)
            inputs = [FileRef(*file, work.page_id) for file in work.inputs]
            if self._transfer is not None:
                directory, inputs = self._transfer.fetch_files(work.workspace_id, directory, inputs)
            job = page_job(directory, work.page_id, inputs, work.output_file_grps)
            outputs = processor.process_page(job)
            check_outputs(work, outputs, directory)
            if self._transfer is not None:
                self._transfer.push_files(work.workspace_id, directory, work.token, outputs)
        except Exception as error:
            return Answer(
                work.token,
                time.perf_counter() - started,
                (),
                describe_error(error),
                traceback.format_exc(),
                retry=not isinstance(error, FormatError),
            )
        seconds = time.perf_counter() - started
        self._seconds[self._key(work.executable, work.parameters)] = seconds
        return Answer(
            work.token,
            seconds,
            tuple((o.file_grp, o.file_id, o.mimetype, o.href, o.page_id) for o in outputs),
        )

    @staticmethod
    def _key(executable: str, parameters: Mapping[str, Any]) -> tuple[str, str]:
        return executable, json.dumps(parameters, sort_keys=True, default=str)

    def close(self) -> None:
        for instance in self._instances.values():
            with contextlib.suppress(Exception):  # the worker is ending; nobody to report to
                instance.close()
        self._instances.clear()
        if self._transfer is not None:
            self._transfer.close()

    def _processor(self, executable: str, parameters: Mapping[str, Any]) -> Processor | _Broken:
        key = self._key(executable, parameters)
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


def check_outputs(work: Work, outputs: Sequence[OutputFile], workspace_dir: Path) -> None:
    """Check a page's outputs here, in the worker, where the page can still fail
    (`workspace_dir`: where they were written, the workspace or its mirror)."""
    check_page_outputs(
        outputs,
        executable=work.executable,
        output_file_grps=work.output_file_grps,
        page_id=work.page_id,
        workspace_dir=workspace_dir,
    )


def describe_error(error: BaseException) -> str:
    """A page's error in one message: ours as they are, others with their type."""
    if isinstance(error, OcrswarmError):
        return str(error)
    return f"{type(error).__name__}: {error}"
