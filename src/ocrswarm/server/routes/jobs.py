"""Job control beyond the OCR-D spec: cancel, retry, per-page status, listing, live progress.

These work on both kinds of job ids (processing and workflow), because the store resolves
either. Live progress is a server-sent event stream that polls the store: the store is the
one source of truth, so the stream is right whichever process or worker moved the job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Protocol

import anyio
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ocrswarm.engine.records import JobInfo, Progress, WorkflowJobInfo
from ocrswarm.engine.states import FINISHED, State
from ocrswarm.engine.store import Store
from ocrswarm.errors import NotFoundError, UsageError
from ocrswarm.processors.ocrd_tool import canonical_executable
from ocrswarm.server.auth import Role, require
from ocrswarm.server.deps import get_service
from ocrswarm.server.graceful import stopping_event
from ocrswarm.server.schemas import ErrorBody

router = APIRouter(tags=["jobs"])

READ = [Depends(require(Role.READER))]
SUBMIT = [Depends(require(Role.SUBMITTER))]


class Settling(Protocol):
    """What these routes need of the engine service: its store, and the state a job shows
    the outside world (finished only once its outputs are in the METS)."""

    store: Store

    def settled_states(
        self, job_ids: Sequence[str] = (), workflow_job_ids: Sequence[str] = ()
    ) -> dict[str, State]: ...

    def job_state(self, job_id: str) -> State: ...

    def workflow_job_state(self, workflow_job_id: str) -> State: ...


ServiceDep = Annotated[Settling, Depends(get_service)]

# Live progress: how often the store is read, and how long a quiet stream waits before a
# heartbeat comment (which keeps proxies from closing an idle connection).
EVENT_POLL_SECONDS = 0.5
HEARTBEAT_SECONDS = 15.0


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such job"}
}
INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "A query parameter is invalid"}
}


class JobKind(StrEnum):
    PROCESSING = "processing"
    WORKFLOW = "workflow"


class JobControlResult(BaseModel):
    """What a cancel or retry did: how many page tasks it changed, and the job's state now."""

    job_id: str
    state: State
    tasks_changed: int = Field(description="page tasks cancelled, or sent back to the queue")


class PageStatus(BaseModel):
    """One page task of a job: where one page stands in one step."""

    page_id: str
    step: int = Field(description="the step of the workflow (0 for the first)")
    processor: str
    job_id: str = Field(description="the processing job the task belongs to")
    state: State
    attempts: int
    error: str | None = None


class PageStatusList(BaseModel):
    job_id: str
    total: int = Field(description="page tasks matching the filter, before paging")
    limit: int
    offset: int
    pages: list[PageStatus]


class JobSummary(BaseModel):
    """One job in a listing."""

    job_id: str
    kind: JobKind
    state: State
    processors: list[str]
    workspace_id: str
    path_to_mets: str
    workflow_job_id: str | None = Field(
        default=None, description="for a processing job that is a step of a workflow job"
    )
    page_count: int
    page_id: str | None = Field(
        default=None, description="the page selection it was submitted with; none: every page"
    )
    created_at: float = Field(description="seconds since the epoch")
    description: str | None = None


class JobList(BaseModel):
    total: int = Field(description="jobs matching the filters, before paging")
    limit: int
    offset: int
    next_offset: int | None = Field(default=None, description="where the next page starts, if any")
    jobs: list[JobSummary]


@router.post(
    "/job/{job_id}/cancel",
    dependencies=SUBMIT,
    summary="Cancel a processing or workflow job",
    description="Waiting and queued page tasks are cancelled at once; running ones finish.",
    responses=NOT_FOUND,
)
def cancel_job(job_id: str, service: ServiceDep) -> JobControlResult:
    changed = service.store.cancel(job_id)
    return JobControlResult(
        job_id=job_id, state=settled_state(service, job_id), tasks_changed=changed
    )


@router.post(
    "/job/{job_id}/retry",
    dependencies=SUBMIT,
    summary="Run a job's failed and cancelled pages again",
    responses={
        **NOT_FOUND,
        422: {"model": ErrorBody, "description": "A job this one depends on did not succeed"},
    },
)
def retry_job(job_id: str, service: ServiceDep) -> JobControlResult:
    changed = service.store.retry_failed(job_id)
    return JobControlResult(
        job_id=job_id, state=settled_state(service, job_id), tasks_changed=changed
    )


def settled_state(service: Settling, job_id: str) -> State:
    """The state of a workflow or processing job as every other endpoint reports it."""
    try:
        return service.workflow_job_state(job_id)
    except UsageError:  # a processing job
        return service.job_state(job_id)


@router.get(
    "/job/{job_id}/pages",
    dependencies=READ,
    summary="Per-page status of a job",
    responses={**NOT_FOUND, **INVALID},
)
def job_pages(
    job_id: str,
    service: ServiceDep,
    state: State | None = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> PageStatusList:
    store = service.store
    processors = {step.job_id: step.executable for step in store.progress(job_id).steps}
    tasks = [task for task in store.page_tasks(job_id) if state is None or task.state is state]
    pages = [
        PageStatus(
            page_id=task.page_id,
            step=task.step,
            processor=processors[task.job_id],
            job_id=task.job_id,
            state=task.state,
            attempts=task.attempts,
            error=task.error,
        )
        for task in tasks[offset : offset + limit]
    ]
    return PageStatusList(job_id=job_id, total=len(tasks), limit=limit, offset=offset, pages=pages)


@router.get("/jobs", dependencies=READ, summary="List jobs, newest first", responses=INVALID)
def list_jobs(
    service: ServiceDep,
    state: State | None = None,
    processor: str | None = None,
    workspace_id: str | None = None,
    kind: JobKind | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> JobList:
    processing = service.store.jobs(workspace_id)
    summaries: list[JobSummary] = []
    workflows = service.store.workflow_jobs(workspace_id) if kind != JobKind.PROCESSING else []
    if kind == JobKind.WORKFLOW:
        processing = []
    shown = service.settled_states(
        [job.id for job in processing], [workflow.id for workflow in workflows]
    )
    for workflow in workflows:
        summaries.append(_workflow_summary(workflow, shown.get(workflow.id, workflow.state)))
    for job in processing:
        summaries.append(_processing_summary(job, shown.get(job.id, job.state)))
    names = _processor_names(processor)
    matching = [
        summary
        for summary in summaries
        if (state is None or summary.state is state)
        and (names is None or names.intersection(summary.processors))
    ]
    matching.sort(key=lambda summary: summary.created_at, reverse=True)
    end = offset + limit
    return JobList(
        total=len(matching),
        limit=limit,
        offset=offset,
        next_offset=end if end < len(matching) else None,
        jobs=matching[offset:end],
    )


def _processor_names(processor: str | None) -> set[str] | None:
    """The executables a processor filter matches: the name given and what it aliases."""
    if processor is None:
        return None
    try:
        return {processor, canonical_executable(processor)}
    except NotFoundError:
        return {processor}


def _workflow_summary(job: WorkflowJobInfo, state: State) -> JobSummary:
    return JobSummary(
        job_id=job.id,
        kind=JobKind.WORKFLOW,
        state=state,
        processors=[step.executable for step in job.steps],
        workspace_id=job.workspace_id,
        path_to_mets=str(job.mets_path),
        page_count=job.page_count,
        page_id=job.page_selection,
        created_at=job.created_at,
        description=job.description,
    )


def _processing_summary(job: JobInfo, state: State) -> JobSummary:
    return JobSummary(
        job_id=job.id,
        kind=JobKind.PROCESSING,
        state=state,
        processors=[job.executable],
        workspace_id=job.workspace_id,
        path_to_mets=str(job.mets_path),
        workflow_job_id=job.workflow_job_id,
        page_count=job.page_count,
        page_id=job.page_selection,
        created_at=job.created_at,
        description=job.description,
    )


@router.get(
    "/job/{job_id}/events",
    dependencies=READ,
    summary="Live progress of a job as server-sent events",
    description=(
        "One `progress` event per change (task counts per state, pages done, failed and "
        "cancelled, pages per second), a `: heartbeat` comment while nothing changes, and a "
        "last `end` event with the final state — or, when the server stops first, with the "
        "state then and `server_stopping: true`."
    ),
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}},
        **NOT_FOUND,
    },
)
async def job_events(job_id: str, request: Request, service: ServiceDep) -> StreamingResponse:
    first = await run_in_threadpool(_read, service, job_id)  # an unknown job is a 404 here
    return StreamingResponse(
        _progress_events(service, first, stopping_event(request.app)),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@dataclass(frozen=True, slots=True)
class _Reading:
    """A job's progress in the store, and the state it shows (see `settled_state`)."""

    progress: Progress
    state: State

    def same_as(self, other: _Reading) -> bool:
        mine, theirs = self.progress, other.progress
        return (
            self.state == other.state
            and mine.counts == theirs.counts
            and mine.pages_done == theirs.pages_done
        )


def _read(service: Settling, job_id: str) -> _Reading:
    """The state first, then the progress: the counts may run ahead of the state but never
    behind it, so the events before `end` always carry the final counts."""
    state = settled_state(service, job_id)
    return _Reading(service.store.progress(job_id), state)


async def _progress_events(
    service: Settling, first: _Reading, stopping: threading.Event
) -> AsyncIterator[str]:
    """Events from a job's progress until its state is final or the server stops."""
    job_id = first.progress.job_id
    current = first
    started = time.monotonic()
    yield _event("progress", _progress_data(current, 0.0))
    quiet_since = started
    while current.state not in FINISHED and not stopping.is_set():
        await anyio.sleep(EVENT_POLL_SECONDS)
        latest = await run_in_threadpool(_read, service, job_id)
        now = time.monotonic()
        if not latest.same_as(current):
            done = latest.progress.pages_done - first.progress.pages_done
            yield _event("progress", _progress_data(latest, done / max(now - started, 1e-9)))
            quiet_since = now
        elif now - quiet_since >= HEARTBEAT_SECONDS:
            yield ": heartbeat\n\n"
            quiet_since = now
        current = latest
    end: dict[str, Any] = {"job_id": job_id, "state": current.state}
    if current.state not in FINISHED:
        end["server_stopping"] = True
    yield _event("end", end)


def _progress_data(reading: _Reading, pages_per_second: float) -> dict[str, Any]:
    progress = reading.progress
    return {
        "job_id": progress.job_id,
        "state": reading.state,
        "counts": {state: progress.counts.get(state, 0) for state in _TASK_STATES},
        "pages_total": progress.pages_total,
        "pages_done": progress.pages_done,
        "pages_failed": progress.pages_failed,
        "pages_cancelled": progress.pages_cancelled,
        "pages_per_second": round(pages_per_second, 3),
    }


_TASK_STATES: Iterable[State] = tuple(s for s in State if s is not State.UNSET)


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
