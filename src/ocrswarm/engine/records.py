"""What the store hands out and takes back: plain frozen records, no database objects.

A `TaskLease` is self-contained (processor, parameters, the page's input files, where to
write) so a worker never reads the METS, and it converts to and from JSON so the same
record can travel over a message queue or HTTP. `FileRef` is the one place where the
engine's file records meet the processors' `InputFile`/`OutputFile`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrswarm.engine.files import page_job
from ocrswarm.engine.states import FINISHED, State
from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.processors.processor import OutputFile, PageJob


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file of a page in a workspace; `href` is relative to the workspace directory."""

    file_grp: str
    file_id: str
    mimetype: str
    href: str
    page_id: str

    @classmethod
    def from_output(cls, output: OutputFile) -> FileRef:
        """The record of a file a processor wrote."""
        return cls(output.file_grp, output.file_id, output.mimetype, output.href, output.page_id)

    def to_dict(self) -> dict[str, str]:
        return {
            "file_grp": self.file_grp,
            "file_id": self.file_id,
            "mimetype": self.mimetype,
            "href": self.href,
            "page_id": self.page_id,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileRef:
        return cls(
            str(data["file_grp"]),
            str(data["file_id"]),
            str(data["mimetype"]),
            str(data["href"]),
            str(data["page_id"]),
        )


@dataclass(frozen=True, slots=True)
class PageInputs:
    """A page to process and its files, already in the METS, in the fileGrps the jobs read."""

    page_id: str
    files: Sequence[FileRef] = ()


@dataclass(frozen=True, slots=True)
class TaskLease:
    """A claimed page task: everything a worker needs, and the token that proves the claim."""

    task_id: int
    token: str
    job_id: str
    workflow_job_id: str | None  # None for a standalone processing job
    executable: str
    parameters: Mapping[str, Any]
    page_id: str
    inputs: Sequence[FileRef]  # in the order of input_file_grps; a grp without file is absent
    input_file_grps: tuple[str, ...]
    output_file_grps: tuple[str, ...]
    workspace_id: str
    workspace_dir: Path
    attempt: int  # 1 for the first try
    max_attempts: int
    lease_until: float

    def page_job(self) -> PageJob:
        """The processor's view of this task (hrefs resolved safely, one file per fileGrp)."""
        return page_job(self.workspace_dir, self.page_id, self.inputs, self.output_file_grps)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form, for a message queue or an HTTP pull client."""
        return {
            "task_id": self.task_id,
            "token": self.token,
            "job_id": self.job_id,
            "workflow_job_id": self.workflow_job_id,
            "executable": self.executable,
            "parameters": dict(self.parameters),
            "page_id": self.page_id,
            "inputs": [ref.to_dict() for ref in self.inputs],
            "input_file_grps": list(self.input_file_grps),
            "output_file_grps": list(self.output_file_grps),
            "workspace_id": self.workspace_id,
            "workspace_dir": str(self.workspace_dir),
            "attempt": self.attempt,
            "max_attempts": self.max_attempts,
            "lease_until": self.lease_until,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskLease:
        return cls(
            task_id=int(data["task_id"]),
            token=str(data["token"]),
            job_id=str(data["job_id"]),
            workflow_job_id=data["workflow_job_id"],
            executable=str(data["executable"]),
            parameters=dict(data["parameters"]),
            page_id=str(data["page_id"]),
            inputs=[FileRef.from_dict(item) for item in data["inputs"]],
            input_file_grps=tuple(data["input_file_grps"]),
            output_file_grps=tuple(data["output_file_grps"]),
            workspace_id=str(data["workspace_id"]),
            workspace_dir=Path(data["workspace_dir"]),
            attempt=int(data["attempt"]),
            max_attempts=int(data["max_attempts"]),
            lease_until=float(data["lease_until"]),
        )


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A worker's report that a task succeeded, with the files it wrote (to register)."""

    task_id: int
    token: str
    outputs: Sequence[FileRef] = ()

    @classmethod
    def from_outputs(cls, lease: TaskLease, outputs: Sequence[OutputFile]) -> TaskResult:
        """The result of a lease from what the processor returned."""
        return cls(lease.task_id, lease.token, [FileRef.from_output(o) for o in outputs])

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "token": self.token,
            "outputs": [ref.to_dict() for ref in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TaskResult:
        outputs = [FileRef.from_dict(item) for item in data["outputs"]]
        return cls(int(data["task_id"]), str(data["token"]), outputs)


@dataclass(frozen=True, slots=True)
class Registration:
    """An output file waiting to be registered in its workspace's METS."""

    id: int
    file: FileRef
    task_id: int
    job_id: str
    executable: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class WorkspaceInfo:
    id: str
    mets_path: Path
    directory: Path


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A processing job: one step over the pages of its workflow job."""

    id: str
    workflow_job_id: str | None  # None for a standalone processing job
    workspace_id: str
    mets_path: Path
    executable: str
    step: int
    input_file_grps: tuple[str, ...]
    output_file_grps: tuple[str, ...]
    parameters: Mapping[str, Any]
    state: State
    priority: int
    max_attempts: int
    description: str | None
    page_selection: str | None  # as submitted (OCR-D's page_id); None: every page
    depends_on: tuple[str, ...]
    counts: Mapping[State, int]  # page tasks per state
    created_at: float
    finished_at: float | None

    @property
    def page_count(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True, slots=True)
class WorkflowJobInfo:
    """A workflow job: its steps, processing jobs and derived state."""

    id: str
    workspace_id: str
    mets_path: Path
    state: State
    steps: tuple[WorkflowStep, ...]
    processing_job_ids: tuple[str, ...]
    page_count: int
    priority: int
    description: str | None
    page_selection: str | None  # as submitted (OCR-D's page_id); None: every page
    fingerprint: str | None
    depends_on: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job's state and whether its outputs are all in the METS: what watching many jobs
    at once needs."""

    job_id: str
    workspace_id: str
    state: State
    finished_at: float | None  # of a workflow job: when its last step finished
    outputs_pending: bool  # some of its outputs still wait in the outbox for the METS


@dataclass(frozen=True, slots=True)
class StepProgress:
    job_id: str
    executable: str
    state: State
    counts: Mapping[State, int]


@dataclass(frozen=True, slots=True)
class Progress:
    """Where a job stands: task counts overall and per step, and pages by outcome.

    A page is done when all its tasks succeeded, failed when one of them FAILED, cancelled
    when none failed but one was cancelled; the rest are still under way.
    """

    job_id: str
    state: State
    counts: Mapping[State, int]
    steps: Sequence[StepProgress]
    pages_total: int
    pages_done: int
    pages_failed: int
    pages_cancelled: int

    @property
    def finished(self) -> bool:
        return self.state in FINISHED

    @property
    def pages_pending(self) -> int:
        return self.pages_total - self.pages_done - self.pages_failed - self.pages_cancelled


@dataclass(frozen=True, slots=True)
class FailedTask:
    """A page task that failed for good, with what went wrong."""

    task_id: int
    job_id: str
    page_id: str
    executable: str
    error: str | None
    traceback: str | None
    attempts: int


@dataclass(frozen=True, slots=True)
class TaskInfo:
    """One page task's state, for per-page status views."""

    task_id: int
    job_id: str
    page_id: str
    step: int
    state: State
    attempts: int
    error: str | None = None
    worker_id: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """A worker machine's process (`ocrswarm worker`) as it last reported itself."""

    id: str  # host:pid:random
    host: str
    pid: int
    processors: tuple[str, ...]  # the executables it consumes; empty: every one
    capacity: int  # pages it processes at a time (-j)
    running: int  # pages under way at its last heartbeat
    started_at: float
    last_seen: float
    stopped_at: float | None  # set by a clean stop

    def alive(self, now: float, timeout: float) -> bool:
        """Not stopped, and heard of within `timeout` seconds."""
        return self.stopped_at is None and now - self.last_seen <= timeout


# The names the engine's contract (issue 4) gives the results of submission.
WorkflowJob = WorkflowJobInfo
ProcessingJob = JobInfo
