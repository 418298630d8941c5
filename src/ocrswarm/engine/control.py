"""Steering jobs: cancel, retry the failed pages, change priority.

Cancel: the job's waiting and queued tasks become CANCELLED at once, and so do the later
steps of their pages; tasks RUNNING at that moment are left to finish, and a success is
kept (see queue.py). Retry: what did not succeed (FAILED and CANCELLED tasks) goes back to
the queue with fresh attempts, CACHED where an earlier step must run first, and the job is
no longer cancelled. Jobs that depend on a failed job were cancelled with it; once that job
is retried, retry them too (while a dependency still stands FAILED they cannot be).
"""

from __future__ import annotations

from sqlalchemy import Connection, bindparam, select, update

from ocrswarm.engine.catalog import Catalog
from ocrswarm.engine.lookup import resolve_job
from ocrswarm.engine.propagation import cancel_later_steps, refresh_jobs
from ocrswarm.engine.schema import job_dependencies, jobs, task_state_in, tasks, workflow_jobs
from ocrswarm.engine.states import State, check_transition, checked_sources
from ocrswarm.errors import UsageError

_CANCELLABLE = checked_sources(State.CANCELLED, State.CACHED, State.QUEUED)
_RETRYABLE = (State.FAILED, State.CANCELLED)
_CHUNK = 5000  # page indexes per statement


def cancel(connection: Connection, catalog: Catalog, now: float, job_id: str) -> int:
    """Cancel a workflow job or processing job; how many page tasks were cancelled."""
    target = resolve_job(connection, job_id)
    connection.execute(
        update(jobs).where(jobs.c.id.in_(target.job_ids)).values(cancel_requested=True)
    )
    cancelled = connection.execute(
        update(tasks)
        .where(tasks.c.job_id.in_(target.job_ids), task_state_in(_CANCELLABLE))
        .values(state=State.CANCELLED, error="job cancelled", finished_at=now)
        .returning(tasks.c.workflow_job_id, tasks.c.page_index, tasks.c.step)
    ).all()
    touched = set(target.job_ids)
    origins = [(row.workflow_job_id, row.page_index, row.step) for row in cancelled]
    count = len(cancelled)
    if origins and not target.is_workflow:
        reason = "an earlier step of this page was cancelled"
        later_jobs, later_count = cancel_later_steps(connection, catalog, origins, now, reason)
        touched |= later_jobs
        count += later_count
    refresh_jobs(connection, catalog, touched, now)
    return count


def retry_failed(connection: Connection, catalog: Catalog, now: float, job_id: str) -> int:
    """Run again what did not succeed; how many page tasks went back to the queue.

    Every FAILED or CANCELLED task of the job (for a processing job: of it and the later
    steps of its workflow) gets fresh attempts, and the job is no longer cancelled. A task
    whose earlier step on the page ended without success and is not retried with it stays
    as it is, so nothing revived can wait forever.
    """
    target = resolve_job(connection, job_id)
    held = _check_dependencies(connection, target.workflow_id)
    facts = catalog.workflow(connection, target.workflow_id)
    steps = set()
    for job in catalog.jobs(connection, target.job_ids).values():
        steps |= {job.step} | facts.downstream[job.step]
    job_ids = [facts.job_ids[step] for step in sorted(steps)]
    pages = sorted(
        set(
            connection.execute(
                select(tasks.c.page_index).where(
                    tasks.c.job_id.in_(job_ids), tasks.c.state.in_(_RETRYABLE)
                )
            ).scalars()
        )
    )
    if not pages:
        return 0
    connection.execute(update(jobs).where(jobs.c.id.in_(job_ids)).values(cancel_requested=False))
    predecessors = _predecessors(connection, target.workflow_id)
    states: dict[tuple[int, int], tuple[int, State]] = {}
    for start in range(0, len(pages), _CHUNK):
        for row in connection.execute(
            select(tasks.c.id, tasks.c.page_index, tasks.c.step, tasks.c.state)
            .where(
                tasks.c.workflow_job_id == target.workflow_id,
                tasks.c.page_index.in_(pages[start : start + _CHUNK]),
            )
            .order_by(tasks.c.id)
            .with_for_update(key_share=True)
        ):
            states[(row.page_index, row.step)] = (row.id, State(row.state))
    updates = []
    for page_index in pages:
        revived = _revivable(page_index, steps, predecessors, states)
        for step in sorted(revived):
            task_id, state = states[(page_index, step)]
            waiting = int(held) + sum(
                1
                for pred in predecessors[step]
                if states[(page_index, pred)][1] is not State.SUCCESS
            )
            new = State.CACHED if waiting else State.QUEUED
            check_transition(state, new)
            updates.append({"b_id": task_id, "b_state": new, "b_waiting": waiting})
    if updates:
        connection.execute(
            update(tasks)
            .where(tasks.c.id == bindparam("b_id"), task_state_in(_RETRYABLE))
            .values(
                state=bindparam("b_state"),
                waiting=bindparam("b_waiting"),
                attempts=0,
                not_before=None,
                token=None,
                worker_id=None,
                lease_until=None,
                error=None,
                traceback=None,
                started_at=None,
                finished_at=None,
                published=False,
            ),
            updates,
        )
    refresh_jobs(connection, catalog, job_ids, now)
    return len(updates)


def _revivable(
    page_index: int,
    steps: set[int],
    predecessors: list[list[int]],
    states: dict[tuple[int, int], tuple[int, State]],
) -> set[int]:
    """The steps of one page to run again: those in `steps` that did not succeed, less any
    that needs an unsuccessful earlier step which is not run again."""
    revived = {step for step in steps if states[(page_index, step)][1] in _RETRYABLE}
    changed = True
    while changed:
        changed = False
        for step in sorted(revived):
            for pred in predecessors[step]:
                if pred not in revived and states[(page_index, pred)][1] in _RETRYABLE:
                    revived.discard(step)
                    changed = True
                    break
    return revived


def _predecessors(connection: Connection, workflow_id: int) -> list[list[int]]:
    stored = connection.execute(
        select(workflow_jobs.c.step_predecessors).where(workflow_jobs.c.id == workflow_id)
    ).scalar_one()
    return [list(preds) for preds in stored]


def _check_dependencies(connection: Connection, workflow_id: int) -> bool:
    """Whether the workflow job still waits for its dependencies; UsageError if one failed."""
    rows = connection.execute(
        select(jobs.c.uid, jobs.c.state)
        .join(job_dependencies, job_dependencies.c.depends_on_job_id == jobs.c.id)
        .where(job_dependencies.c.workflow_job_id == workflow_id)
    ).all()
    for row in rows:
        if row.state in (State.FAILED, State.CANCELLED):
            raise UsageError(
                f"cannot retry: job {row.uid}, which this job depends on, ended {row.state}; "
                "retry that job first"
            )
    held = connection.execute(
        select(workflow_jobs.c.held).where(workflow_jobs.c.id == workflow_id)
    ).scalar_one()
    return bool(held)


def set_priority(connection: Connection, job_id: str, priority: int) -> None:
    """Change the priority of the workflow job that `job_id` names or belongs to."""
    target = resolve_job(connection, job_id)
    connection.execute(
        update(workflow_jobs)
        .where(workflow_jobs.c.id == target.workflow_id)
        .values(priority=priority)
    )
    connection.execute(
        update(tasks).where(tasks.c.workflow_job_id == target.workflow_id).values(priority=priority)
    )
