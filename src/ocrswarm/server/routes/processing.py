"""Processing: run one processor over (a selection of) a workspace's pages, and its job."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse

from ocrswarm.engine.records import JobInfo
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store
from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.errors import NotFoundError, UsageError
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.server.auth import Role, require
from ocrswarm.server.deps import (
    ResultsDep,
    ServiceDep,
    SettingsDep,
    StoreDep,
    UploadedWorkspacesDep,
    WorkspaceCacheDep,
    WorkspaceLocksDep,
)
from ocrswarm.server.logs import job_log
from ocrswarm.server.routes.discovery import known_tool
from ocrswarm.server.schemas import ProcessorArgs, ProcessorJob
from ocrswarm.server.submission import (
    check_callback_url,
    check_result_queue,
    held_target,
    page_inputs,
    report_when_finished,
    require_file_grps,
)

router = APIRouter(tags=["processing"])


@router.post(
    "/processor/run/{executable}",
    response_model=ProcessorJob,
    response_model_exclude_none=True,
    dependencies=[Depends(require(Role.SUBMITTER))],
)
def run_processor(
    executable: str,
    args: ProcessorArgs,
    store: StoreDep,
    service: ServiceDep,
    settings: SettingsDep,
    cache: WorkspaceCacheDep,
    results: ResultsDep,
    uploaded: UploadedWorkspacesDep,
    locks: WorkspaceLocksDep,
) -> ProcessorJob:
    """A processing job: the processor over the selected pages, each page a task."""
    tool = known_tool(executable)
    check_result_queue(results, args.result_queue_name)
    check_callback_url(args.callback_url)
    if not args.input_file_grps:
        raise UsageError("input_file_grps: at least one input fileGrp is required")
    if not args.output_file_grps:
        raise UsageError("output_file_grps: at least one output fileGrp is required")
    parameters = validate_parameters(tool, args.parameters)
    depends_on = list(args.depends_on or ())
    made_by_dependencies = _outputs_of(store, depends_on)
    step = WorkflowStep(
        str(tool.get("executable", executable)),
        tuple(args.input_file_grps),
        tuple(args.output_file_grps),
        parameters,
        None,
    )
    with held_target(
        store,
        settings,
        cache,
        locks,
        path_to_mets=args.path_to_mets,
        workspace_id=args.workspace_id,
        uploaded=uploaded,
    ) as target:
        require_file_grps(target.workspace, args.input_file_grps, made_by_dependencies)
        pages = page_inputs(
            target.workspace, args.page_id, args.input_file_grps, keep_empty=bool(depends_on)
        )
        job = store.submit_processing_job(
            target.workspace_id,
            step,
            pages,
            description=args.description,
            depends_on=depends_on,
            page_selection=args.page_id,
        )
    service.add_workspace(target.workspace_id)
    report_when_finished(
        service,
        results,
        target,
        job.id,
        workflow=False,
        callback_url=args.callback_url,
        result_queue=args.result_queue_name,
    )
    return _processor_job(job, service.job_state(job.id))


@router.get(
    "/processor/job/{job_id}",
    response_model=ProcessorJob,
    response_model_exclude_none=True,
    dependencies=[Depends(require(Role.READER))],
)
def processor_job(job_id: str, service: ServiceDep) -> ProcessorJob:
    """A processing job and its state."""
    job = service.store.job(job_id)
    return _processor_job(job, service.job_state(job.id))


@router.get(
    "/processor/log/{job_id}",
    response_class=PlainTextResponse,
    dependencies=[Depends(require(Role.READER))],
)
def processor_log(job_id: str, service: ServiceDep) -> str:
    """What the job ran and how each page went."""
    return job_log(service.store, job_id, service.job_state(job_id))


def _processor_job(job: JobInfo, state: State) -> ProcessorJob:
    return ProcessorJob(
        job_id=job.id,
        processor_name=job.executable,
        state=state,
        path_to_mets=str(job.mets_path),
        workspace_id=job.workspace_id,
        input_file_grps=list(job.input_file_grps),
        output_file_grps=list(job.output_file_grps),
        page_id=job.page_selection,
        log_file_path=f"/processor/log/{job.id}",
    )


def _outputs_of(store: Store, job_ids: list[str]) -> set[str]:
    """The fileGrps the jobs `job_ids` (processing or workflow jobs) write."""
    produced: set[str] = set()
    for job_id in job_ids:
        try:
            produced.update(store.job(job_id).output_file_grps)
        except NotFoundError:
            try:
                workflow = store.workflow_job(job_id)
            except NotFoundError:
                raise UsageError(f"depends_on: there is no job {job_id!r}") from None
            for step in workflow.steps:
                produced.update(step.output_file_grps)
    return produced
