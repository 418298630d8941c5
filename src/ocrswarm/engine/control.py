"""Steering jobs: cancel, retry the failed pages, change priority.

Cancel: the job's waiting and queued tasks become CANCELLED at once, and so do the later
steps of their pages; tasks RUNNING at that moment are left to finish, and a success is
kept (see queue.py). Retry: the FAILED tasks of a job and the CANCELLED later steps of
their pages go back to the queue with fresh attempts (CACHED where a retried predecessor
must run first). Jobs that depend on a failed job were cancelled with it and are not
revived by retrying it: retry them too (a job whose dependency still failed cannot be).
"""

from __future__ import annotations

from collections import defaultdict

from sqlalchemy import Connection, bindparam, select, update

from ocrswarm.engine.catalog import Catalog
from ocrswarm.engine.lookup import resolve_job
from ocrswarm.engine.propagation import cancel_later_steps, refresh_jobs
from ocrswarm.engine.schema import job_dependencies, jobs, task_state_in, tasks, workflow_jobs
from ocrswarm.engine.states import State, check_transition, checked_sources
from ocrswarm.errors import UsageError

_CANCELLABLE = checked_sources(State.CANCELLED, State.CACHED, State.QUEUED)
_RETRYABLE = (State.FAILED, State.CANCELLED)


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
    """Put a job's FAILED tasks (and the CANCELLED later steps of their pages) back; how many."""
    target = resolve_job(connection, job_id)
    failed = connection.execute(
        select(tasks.c.page_index, tasks.c.step).where(
            tasks.c.job_id.in_(target.job_ids), tasks.c.state == State.FAILED
        )
    ).all()
    if not failed:
        return 0
    facts = catalog.workflow(connection, target.workflow_id)
    held = _check_dependencies(connection, target.workflow_id)
    predecessors = _predecessors(connection, target.workflow_id)
    pages = sorted({row.page_index for row in failed})
    states: dict[tuple[int, int], tuple[int, State]] = {
        (row.page_index, row.step): (row.id, State(row.state))
        for row in connection.execute(
            select(tasks.c.id, tasks.c.page_index, tasks.c.step, tasks.c.state)
            .where(tasks.c.workflow_job_id == target.workflow_id, tasks.c.page_index.in_(pages))
            .with_for_update()
        )
    }
    revive: dict[int, set[int]] = defaultdict(set)  # page index -> steps to run again
    for row in failed:
        revive[row.page_index] |= {row.step} | facts.downstream[row.step]
    updates = []
    for page_index, steps in revive.items():
        steps = _with_unfinished_predecessors(
            steps, predecessors, facts.downstream, page_index, states
        )
        for step in sorted(steps):
            task_id, state = states[(page_index, step)]
            if state not in _RETRYABLE:
                continue
            waiting = int(held) + sum(
                1
                for pred in predecessors[step]
                if states[(page_index, pred)][1] is not State.SUCCESS
            )
            new = State.CACHED if waiting else State.QUEUED
            check_transition(state, new)
            updates.append({"b_id": task_id, "b_state": new, "b_waiting": waiting})
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
        ),
        updates,
    )
    connection.execute(
        update(jobs).where(jobs.c.id.in_(facts.job_ids)).values(cancel_requested=False)
    )
    refresh_jobs(connection, catalog, set(facts.job_ids), now)
    return len(updates)


def _with_unfinished_predecessors(
    steps: set[int],
    predecessors: list[list[int]],
    downstream: tuple[frozenset[int], ...],
    page_index: int,
    states: dict[tuple[int, int], tuple[int, State]],
) -> set[int]:
    """`steps` plus any FAILED or CANCELLED step they need (and what needs that), so that no
    revived task waits for a predecessor that will never run."""
    result = set(steps)
    todo = list(result)
    while todo:
        step = todo.pop()
        for pred in predecessors[step]:
            if pred not in result and states[(page_index, pred)][1] in _RETRYABLE:
                for added in {pred} | downstream[pred]:
                    if added not in result:
                        result.add(added)
                        todo.append(added)
    return result


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
