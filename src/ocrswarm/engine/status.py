"""Reading where jobs stand: job records, progress, failed pages, listings, resume lookup.

These read committed rows only (never the catalog), so they may run in any transaction.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterator, Sequence
from itertools import islice
from pathlib import Path

from sqlalchemy import Connection, false, func, select

from ocrswarm.engine.lookup import Target, WorkspaceNotFoundError, resolve_job
from ocrswarm.engine.records import (
    FailedTask,
    JobInfo,
    JobStatus,
    Progress,
    StepProgress,
    TaskInfo,
    WorkflowJobInfo,
    WorkspaceInfo,
)
from ocrswarm.engine.schema import (
    KIND_WORKFLOW,
    files,
    job_dependencies,
    jobs,
    task_state_is,
    tasks,
    workflow_jobs,
    workspaces,
)
from ocrswarm.engine.states import FINISHED, State
from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.errors import UsageError

_STEP_COLUMNS = (
    jobs.c.executable,
    jobs.c.input_file_grps,
    jobs.c.output_file_grps,
    jobs.c.parameters,
)


def job_info(connection: Connection, job_id: str) -> JobInfo:
    """A processing job (a workflow job id is refused: use workflow_job_info)."""
    target = resolve_job(connection, job_id)
    if target.is_workflow:
        raise UsageError(f"{job_id} is a workflow job, not a processing job")
    return _job_infos(connection, list(target.job_ids))[0]


def _job_infos(connection: Connection, job_ids: list[int]) -> list[JobInfo]:
    rows = connection.execute(
        select(
            jobs,
            workflow_jobs.c.uid.label("workflow_uid"),
            workflow_jobs.c.kind,
            workflow_jobs.c.workspace_id,
            workflow_jobs.c.priority,
            workflow_jobs.c.description,
            workflow_jobs.c.page_selection,
            workspaces.c.mets_path,
        )
        .join(workflow_jobs, workflow_jobs.c.id == jobs.c.workflow_job_id)
        .join(workspaces, workspaces.c.id == workflow_jobs.c.workspace_id)
        .where(jobs.c.id.in_(job_ids))
        .order_by(jobs.c.id)
    ).all()
    counts = _counts_by_job(connection, job_ids)
    depends_on = _dependencies(connection, {row.workflow_job_id for row in rows})
    return [
        JobInfo(
            id=row.uid,
            workflow_job_id=row.workflow_uid if row.kind == KIND_WORKFLOW else None,
            workspace_id=row.workspace_id,
            mets_path=Path(row.mets_path),
            executable=row.executable,
            step=row.step,
            input_file_grps=tuple(row.input_file_grps),
            output_file_grps=tuple(row.output_file_grps),
            parameters=row.parameters,
            state=State(row.state),
            priority=row.priority,
            max_attempts=row.max_attempts,
            description=row.description,
            page_selection=row.page_selection,
            depends_on=depends_on.get(row.workflow_job_id, ()),
            counts=counts.get(row.id, {}),
            created_at=row.created_at,
            finished_at=row.finished_at,
        )
        for row in rows
    ]


def _counts_by_job(connection: Connection, job_ids: list[int]) -> dict[int, dict[State, int]]:
    counts: dict[int, dict[State, int]] = defaultdict(dict)
    for job_id, state, count in connection.execute(
        select(tasks.c.job_id, tasks.c.state, func.count())
        .where(tasks.c.job_id.in_(job_ids))
        .group_by(tasks.c.job_id, tasks.c.state)
    ):
        counts[job_id][State(state)] = count
    return counts


def _dependencies(connection: Connection, workflow_ids: set[int]) -> dict[int, tuple[str, ...]]:
    found: dict[int, list[str]] = defaultdict(list)
    for workflow_id, uid in connection.execute(
        select(job_dependencies.c.workflow_job_id, jobs.c.uid)
        .join(jobs, jobs.c.id == job_dependencies.c.depends_on_job_id)
        .where(job_dependencies.c.workflow_job_id.in_(sorted(workflow_ids)))
        .order_by(jobs.c.id)
    ):
        found[workflow_id].append(uid)
    return {workflow_id: tuple(uids) for workflow_id, uids in found.items()}


def workflow_job_info(connection: Connection, workflow_job_id: str) -> WorkflowJobInfo:
    """A workflow job (a processing job id is refused: use job_info)."""
    target = resolve_job(connection, workflow_job_id)
    if not target.is_workflow:
        raise UsageError(f"{workflow_job_id} is a processing job, not a workflow job")
    return _workflow_infos(connection, [target.workflow_id])[0]


def _workflow_infos(connection: Connection, workflow_ids: list[int]) -> list[WorkflowJobInfo]:
    rows = connection.execute(
        select(workflow_jobs, workspaces.c.mets_path)
        .join(workspaces, workspaces.c.id == workflow_jobs.c.workspace_id)
        .where(workflow_jobs.c.id.in_(workflow_ids))
        .order_by(workflow_jobs.c.id)
    ).all()
    steps: dict[int, list[tuple[str, WorkflowStep]]] = defaultdict(list)
    for row in connection.execute(
        select(jobs.c.workflow_job_id, jobs.c.uid, *_STEP_COLUMNS)
        .where(jobs.c.workflow_job_id.in_(workflow_ids))
        .order_by(jobs.c.workflow_job_id, jobs.c.step)
    ):
        step = WorkflowStep(
            row.executable,
            tuple(row.input_file_grps),
            tuple(row.output_file_grps),
            row.parameters,
        )
        steps[row.workflow_job_id].append((row.uid, step))
    depends_on = _dependencies(connection, set(workflow_ids))
    return [
        WorkflowJobInfo(
            id=row.uid,
            workspace_id=row.workspace_id,
            mets_path=Path(row.mets_path),
            state=State(row.state),
            steps=tuple(step for _, step in steps[row.id]),
            processing_job_ids=tuple(uid for uid, _ in steps[row.id]),
            page_count=row.page_count,
            priority=row.priority,
            description=row.description,
            page_selection=row.page_selection,
            fingerprint=row.fingerprint,
            depends_on=depends_on.get(row.id, ()),
            created_at=row.created_at,
        )
        for row in rows
    ]


def list_workflow_jobs(connection: Connection, workspace_id: str | None) -> list[WorkflowJobInfo]:
    """Every workflow job (of one workspace), oldest first."""
    query = select(workflow_jobs.c.id).where(workflow_jobs.c.kind == KIND_WORKFLOW)
    if workspace_id is not None:
        query = query.where(workflow_jobs.c.workspace_id == workspace_id)
    return _workflow_infos(connection, list(connection.execute(query).scalars()))


def list_jobs(connection: Connection, workspace_id: str | None) -> list[JobInfo]:
    """Every processing job (of one workspace), oldest first."""
    query = select(jobs.c.id).join(workflow_jobs, workflow_jobs.c.id == jobs.c.workflow_job_id)
    if workspace_id is not None:
        query = query.where(workflow_jobs.c.workspace_id == workspace_id)
    return _job_infos(connection, list(connection.execute(query).scalars()))


_IDS_PER_QUERY = 500  # far below every database's limit on bound parameters


def job_statuses(
    connection: Connection, job_ids: Collection[str], workflow_job_ids: Collection[str]
) -> dict[str, JobStatus]:
    """The state of many processing and workflow jobs, one query per 500 ids of each kind
    (not several per job), plus one per 500 workspaces of finished ones for their outputs
    still in the outbox; ids not found are left out."""
    rows: list[tuple[str, str, State, float | None, str, int]] = []  # …, kind, key
    for chunk in _chunks(sorted(set(job_ids))):
        for row in connection.execute(
            select(
                jobs.c.id,
                jobs.c.uid,
                jobs.c.state,
                jobs.c.finished_at,
                workflow_jobs.c.workspace_id,
            )
            .join(workflow_jobs, workflow_jobs.c.id == jobs.c.workflow_job_id)
            .where(jobs.c.uid.in_(chunk))
        ):
            rows.append(
                (row.uid, row.workspace_id, State(row.state), row.finished_at, "job", row.id)
            )
    for chunk in _chunks(sorted(set(workflow_job_ids))):
        for row in connection.execute(
            select(
                workflow_jobs.c.id,
                workflow_jobs.c.uid,
                workflow_jobs.c.state,
                workflow_jobs.c.workspace_id,
                func.max(jobs.c.finished_at).label("last_end"),
                func.count(jobs.c.finished_at).label("ended"),
                func.count().label("steps"),
            )
            .join(jobs, jobs.c.workflow_job_id == workflow_jobs.c.id)
            .where(workflow_jobs.c.uid.in_(chunk), workflow_jobs.c.kind == KIND_WORKFLOW)
            .group_by(
                workflow_jobs.c.id,
                workflow_jobs.c.uid,
                workflow_jobs.c.state,
                workflow_jobs.c.workspace_id,
            )
        ):
            finished_at = row.last_end if row.ended == row.steps else None
            rows.append(
                (row.uid, row.workspace_id, State(row.state), finished_at, "workflow", row.id)
            )
    finished_in = {workspace for _, workspace, state, _, _, _ in rows if state in FINISHED}
    pending = _jobs_with_outputs_pending(connection, finished_in)
    return {
        uid: JobStatus(uid, workspace, state, finished_at, (kind, key) in pending)
        for uid, workspace, state, finished_at, kind, key in rows
    }


def _jobs_with_outputs_pending(
    connection: Connection, workspace_ids: Collection[str]
) -> set[tuple[str, int]]:
    """("job", id) and ("workflow", id) of every job with outputs not yet in its METS: the
    outbox, which the METS writer keeps short, read through its (workspace, registered)
    index. This, not a clock, says whether a finished job's files are all in the METS."""
    pending: set[tuple[str, int]] = set()
    for chunk in _chunks(sorted(workspace_ids)):
        for row in connection.execute(
            select(files.c.job_id, files.c.workflow_job_id)
            .distinct()
            .where(files.c.workspace_id.in_(chunk), files.c.registered == false())
        ):
            pending.add(("job", row.job_id))
            pending.add(("workflow", row.workflow_job_id))
    return pending


def _chunks(ids: Sequence[str]) -> Iterator[list[str]]:
    iterator = iter(ids)
    while chunk := list(islice(iterator, _IDS_PER_QUERY)):
        yield chunk


def progress(connection: Connection, job_id: str) -> Progress:
    """Where a workflow job or processing job stands."""
    target = resolve_job(connection, job_id)
    per_job = _counts_by_job(connection, list(target.job_ids))
    step_rows = connection.execute(
        select(jobs.c.id, jobs.c.uid, jobs.c.executable, jobs.c.state)
        .where(jobs.c.id.in_(target.job_ids))
        .order_by(jobs.c.step)
    ).all()
    steps = [
        StepProgress(row.uid, row.executable, State(row.state), per_job.get(row.id, {}))
        for row in step_rows
    ]
    totals: dict[State, int] = defaultdict(int)
    for counts in per_job.values():
        for state, count in counts.items():
            totals[state] += count
    if target.is_workflow:
        state = State(
            connection.execute(
                select(workflow_jobs.c.state).where(workflow_jobs.c.id == target.workflow_id)
            ).scalar_one()
        )
    else:
        state = steps[0].state
    total, done, failed, cancelled = _page_outcomes(connection, target)
    return Progress(
        job_id=target.uid,
        state=state,
        counts=dict(totals),
        steps=steps,
        pages_total=total,
        pages_done=done,
        pages_failed=failed,
        pages_cancelled=cancelled,
    )


def _page_outcomes(connection: Connection, target: Target) -> tuple[int, int, int, int]:
    """Pages in all, done (all tasks succeeded), failed (one FAILED), cancelled (else one
    CANCELLED), without reading every task: the last one cost 25 ms at 10,000 pages.

    A page is done when the tasks of its last steps (the sinks of the DAG, which run only
    after everything before them succeeded) all succeeded; FAILED and CANCELLED tasks are
    few, and found through the (job_id, state) index.
    """
    predecessors: list[list[int]] = connection.execute(
        select(workflow_jobs.c.step_predecessors).where(workflow_jobs.c.id == target.workflow_id)
    ).scalar_one()
    steps = {
        row.step: row.id
        for row in connection.execute(
            select(jobs.c.step, jobs.c.id).where(jobs.c.id.in_(target.job_ids))
        )
    }
    needed = {pred for step in steps for pred in predecessors[step] if pred in steps}
    sinks = [job_id for step, job_id in steps.items() if step not in needed]
    total = connection.execute(
        select(func.count()).where(tasks.c.job_id == sinks[0])  # one task per page
    ).scalar_one()
    succeeded = select(tasks.c.page_index).where(
        tasks.c.job_id.in_(sinks), task_state_is(State.SUCCESS)
    )
    if len(sinks) > 1:
        succeeded = succeeded.group_by(tasks.c.page_index).having(func.count() == len(sinks))
    done = connection.execute(select(func.count()).select_from(succeeded.subquery())).scalar_one()
    failed = _pages_in(connection, target, State.FAILED)
    cancelled = _pages_in(connection, target, State.CANCELLED) - failed
    return int(total), int(done), len(failed), len(cancelled)


def _pages_in(connection: Connection, target: Target, state: State) -> set[int]:
    """The pages with a task of the target in `state`."""
    return set(
        connection.execute(
            select(tasks.c.page_index)
            .where(tasks.c.job_id.in_(target.job_ids), task_state_is(state))
            .distinct()
        ).scalars()
    )


def failed_tasks(connection: Connection, job_id: str) -> list[FailedTask]:
    """The FAILED page tasks of a workflow job or processing job, in page and step order."""
    target = resolve_job(connection, job_id)
    rows = connection.execute(
        select(
            tasks.c.id,
            tasks.c.page_id,
            tasks.c.error,
            tasks.c.traceback,
            tasks.c.attempts,
            jobs.c.uid,
            jobs.c.executable,
        )
        .join(jobs, jobs.c.id == tasks.c.job_id)
        .where(tasks.c.job_id.in_(target.job_ids), tasks.c.state == State.FAILED)
        .order_by(tasks.c.page_index, tasks.c.step)
    ).all()
    return [
        FailedTask(
            row.id, row.uid, row.page_id, row.executable, row.error, row.traceback, row.attempts
        )
        for row in rows
    ]


def page_tasks(connection: Connection, job_id: str) -> list[TaskInfo]:
    """Every page task of a workflow job or processing job, in page and step order."""
    target = resolve_job(connection, job_id)
    rows = connection.execute(
        select(tasks, jobs.c.uid)
        .join(jobs, jobs.c.id == tasks.c.job_id)
        .where(tasks.c.job_id.in_(target.job_ids))
        .order_by(tasks.c.page_index, tasks.c.step)
    ).all()
    return [
        TaskInfo(
            task_id=row.id,
            job_id=row.uid,
            page_id=row.page_id,
            step=row.step,
            state=State(row.state),
            attempts=row.attempts,
            error=row.error,
            worker_id=row.worker_id,
            started_at=row.started_at,
            finished_at=row.finished_at,
        )
        for row in rows
    ]


def find_workflow_job(connection: Connection, workspace_id: str, fingerprint: str) -> str | None:
    """The newest workflow job of `workspace_id` submitted with `fingerprint`, if any."""
    found: str | None = connection.execute(
        select(workflow_jobs.c.uid)
        .where(
            workflow_jobs.c.workspace_id == workspace_id,
            workflow_jobs.c.fingerprint == fingerprint,
            workflow_jobs.c.kind == KIND_WORKFLOW,
        )
        .order_by(workflow_jobs.c.id.desc())
        .limit(1)
    ).scalar_one_or_none()
    return found


def workspace_info(connection: Connection, workspace_id: str) -> WorkspaceInfo:
    """A workspace's METS path and directory."""
    row = connection.execute(
        select(workspaces).where(workspaces.c.id == workspace_id)
    ).one_or_none()
    if row is None:
        raise WorkspaceNotFoundError(f"no workspace with id {workspace_id!r}")
    return WorkspaceInfo(row.id, Path(row.mets_path), Path(row.directory))
