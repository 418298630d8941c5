"""Workflows: stored workflow texts, and running a workflow over a workspace's pages.

A workflow run is submitted in one bulk insert (pages × steps page tasks), so a request
for 1,000 pages is answered at once; its pages are pipelined: `page_wise` is accepted and
changes nothing.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, UploadFile
from fastapi.responses import PlainTextResponse
from starlette.concurrency import run_in_threadpool

from ocrswarm.engine.records import WorkflowJobInfo
from ocrswarm.engine.service import EngineService
from ocrswarm.engine.states import State
from ocrswarm.engine.tools import tool_description
from ocrswarm.engine.workflow import (
    WorkflowStep,
    mets_input_file_grps,
    parse_workflow,
    validate_steps,
)
from ocrswarm.errors import NotFoundError, UsageError
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.server.auth import Role, require
from ocrswarm.server.deps import (
    ResultsDep,
    ServiceDep,
    SettingsDep,
    UploadedWorkspaces,
    UploadedWorkspacesDep,
    WorkspaceCacheDep,
    WorkspaceLocksDep,
)
from ocrswarm.server.metscache import WorkspaceCache
from ocrswarm.server.results import ResultSender
from ocrswarm.server.schemas import WorkflowId, WorkflowJob, WorkflowJobSimple, WorkflowJobStatus
from ocrswarm.server.settings import ServerSettings
from ocrswarm.server.submission import (
    check_callback_url,
    held_target,
    page_inputs,
    report_when_finished,
)
from ocrswarm.server.workspaces import WorkspaceLocks

router = APIRouter(tags=["workflow"])
_readers = [Depends(require(Role.READER))]
_submitters = [Depends(require(Role.SUBMITTER))]
_WORKFLOW_ID = re.compile(r"^[0-9a-f]{32}$")
MAX_WORKFLOW_BYTES = 1024 * 1024


@router.post("/workflow", response_model=WorkflowId, dependencies=_submitters)
async def post_workflow(
    workflow: Annotated[UploadFile, File()], settings: SettingsDep
) -> WorkflowId:
    """Store a workflow text (checked first) for later runs by its id."""
    text = await _read_workflow(workflow)
    workflow_id = uuid.uuid4().hex
    _save_workflow(settings, workflow_id, text)
    return WorkflowId(workflow_id=workflow_id)


@router.put("/workflow/{workflow_id}", dependencies=_submitters)
async def put_workflow(
    workflow_id: str,
    workflow: Annotated[UploadFile, File()],
    settings: SettingsDep,
) -> str:
    """Replace a stored workflow text."""
    _workflow_file(settings, workflow_id)
    _save_workflow(settings, workflow_id, await _read_workflow(workflow))
    return workflow_id


@router.get("/workflow/{workflow_id}", response_class=PlainTextResponse, dependencies=_readers)
def get_workflow(workflow_id: str, settings: SettingsDep) -> str:
    """A stored workflow text."""
    return _workflow_file(settings, workflow_id).read_text(encoding="utf-8")


@router.post(
    "/workflow/run",
    tags=["processing"],
    response_model=WorkflowJob,
    response_model_exclude_none=True,
    dependencies=_submitters,
)
async def run_workflow(
    service: ServiceDep,
    settings: SettingsDep,
    cache: WorkspaceCacheDep,
    results: ResultsDep,
    uploaded: UploadedWorkspacesDep,
    locks: WorkspaceLocksDep,
    mets_path: str | None = None,
    workspace_id: str | None = None,
    agent_type: str = "worker",
    page_id: str | None = None,
    page_wise: bool = False,
    workflow_callback_url: str | None = None,
    workflow_id: str | None = None,
    workflow: Annotated[UploadFile | None, File()] = None,
) -> WorkflowJob:
    """A workflow job over the workspace's selected pages: one processing job per step."""
    check_callback_url(workflow_callback_url)
    if workflow is not None:
        text = await _read_workflow(workflow)
    elif workflow_id is not None:
        text = _workflow_file(settings, workflow_id).read_text(encoding="utf-8")
    else:
        raise UsageError("no workflow: upload one as `workflow` or name one by workflow_id")
    return await run_in_threadpool(
        _submit_workflow,
        service,
        results,
        _RunRequest(text, mets_path, workspace_id, page_id, page_wise, workflow_callback_url),
        settings,
        cache,
        uploaded,
        locks,
    )


@dataclass(frozen=True, slots=True)
class _RunRequest:
    workflow_text: str
    mets_path: str | None
    workspace_id: str | None
    page_id: str | None
    page_wise: bool
    callback_url: str | None


def _submit_workflow(
    service: EngineService,
    results: ResultSender,
    request: _RunRequest,
    settings: ServerSettings,
    cache: WorkspaceCache,
    uploaded: UploadedWorkspaces,
    locks: WorkspaceLocks,
) -> WorkflowJob:
    """Check the workflow against the workspace and submit it in one bulk insert."""
    steps = parse_workflow(request.workflow_text)
    store = service.store
    with held_target(
        store,
        settings,
        cache,
        locks,
        path_to_mets=request.mets_path,
        workspace_id=request.workspace_id,
        uploaded=uploaded,
    ) as target:
        checked = validate_steps(
            steps, tool_description, available_file_grps=target.workspace.mets.file_groups
        )
        pages = page_inputs(target.workspace, request.page_id, mets_input_file_grps(checked))
        job = store.submit_workflow(
            target.workspace_id,
            checked,
            pages,
            description=f"workflow over {len(pages)} pages of {target.mets_path}",
            page_selection=request.page_id,
        )
    service.add_workspace(target.workspace_id)
    report_when_finished(
        service, results, target, job.id, workflow=True, callback_url=request.callback_url
    )
    return _workflow_job(job, request.page_wise)


@router.get("/workflow/job/{job_id}", response_model=WorkflowJobStatus, dependencies=_readers)
def workflow_job(job_id: str, service: ServiceDep) -> WorkflowJobStatus:
    """A workflow job: its state, each step's page tasks per state, and failed pages."""
    store = service.store
    job = store.workflow_job(job_id)
    processors: dict[str, dict[str, Any]] = {}
    shown = service.settled_states(job.processing_job_ids)
    for step, step_job_id in zip(job.steps, job.processing_job_ids, strict=True):
        info = store.job(step_job_id)
        processors[_step_key(step, len(processors))] = {
            "job_id": step_job_id,
            "executable": info.executable,
            "state": str(shown.get(step_job_id, info.state)),
            "counts": {str(state): count for state, count in info.counts.items() if count},
        }
    failed = [
        {
            "job_id": task.job_id,
            "page_id": task.page_id,
            "executable": task.executable,
            "error": task.error,
            "attempts": task.attempts,
        }
        for task in store.failed_tasks(job_id)
    ]
    base = _workflow_job(job, False)
    return WorkflowJobStatus(
        **base.model_dump(),
        state=service.workflow_job_state(job_id),
        processors=processors,
        failed_tasks=failed,
    )


@router.get(
    "/workflow/job-simple/{job_id}", response_model=WorkflowJobSimple, dependencies=_readers
)
def workflow_job_simple(job_id: str, service: ServiceDep) -> WorkflowJobSimple:
    """OCR-D's short view: SUCCESS, FAILED (also for a cancelled job), RUNNING, QUEUED."""
    return WorkflowJobSimple(state=simple_state(service.workflow_job_state(job_id)))


def simple_state(state: State) -> State:
    """OCR-D core's job-simple semantics on top of the engine's job state."""
    if state == State.CANCELLED:
        return State.FAILED
    if state == State.CACHED:
        return State.QUEUED
    return state


def _workflow_job(job: WorkflowJobInfo, page_wise: bool) -> WorkflowJob:
    return WorkflowJob(
        job_id=job.id,
        page_id=job.page_selection or "",  # the spec requires it: "" for every page
        page_wise=page_wise,
        processing_job_ids={
            _step_key(step, index): job_id
            for index, (step, job_id) in enumerate(
                zip(job.steps, job.processing_job_ids, strict=True)
            )
        },
        path_to_mets=str(job.mets_path),
        workspace_id=job.workspace_id,
        description=job.description,
    )


def _step_key(step: WorkflowStep, index: int) -> str:
    """A step's name in job answers: its output fileGrps (unique in a workflow)."""
    return ",".join(step.output_file_grps) or f"step {index + 1}"


async def _read_workflow(upload: UploadFile) -> str:
    """The uploaded workflow text, checked (WorkflowError naming the line)."""
    data = await upload.read(MAX_WORKFLOW_BYTES + 1)
    if len(data) > MAX_WORKFLOW_BYTES:
        raise UsageError(f"workflow: longer than {MAX_WORKFLOW_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError("workflow: not UTF-8 text") from None
    validate_steps(parse_workflow(text), tool_description)
    return text


def _workflows_dir(settings: ServerSettings) -> Path:
    return settings.data_dir / "workflows"


def _workflow_file(settings: ServerSettings, workflow_id: str) -> Path:
    path = _workflows_dir(settings) / f"{workflow_id}.txt"
    if not _WORKFLOW_ID.match(workflow_id) or not path.is_file():
        raise NotFoundError(f"no workflow with id {workflow_id!r}")
    return path


def _save_workflow(settings: ServerSettings, workflow_id: str, text: str) -> None:
    _workflows_dir(settings).mkdir(parents=True, exist_ok=True)
    write_atomic(_workflows_dir(settings) / f"{workflow_id}.txt", text.encode("utf-8"))
