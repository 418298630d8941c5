"""Which QUEUED page tasks are in RabbitMQ: the store's side of the dispatcher.

In distributed mode the store stays the single truth, and a QUEUED task's `published`
flag says that a message naming it was handed to the broker. The dispatcher takes ready
tasks (QUEUED, not published, backoff over) in claim order and marks them in the same
transaction; if the broker then refuses them it unmarks them. Every way back to QUEUED
(retry after backoff, expired lease, release, retry of a failed job) clears the flag, so
the task is sent again; a claim clears it too.

A task marked but never confirmed by the broker (the dispatcher died in between, or the
database connection broke around the commit) would wait forever, so the dispatcher
unmarks every QUEUED task when it starts and after a database error: they are all sent
again. The duplicates this makes are harmless, because a worker claims a task by id
before working on it, and drops a message whose task is no longer claimable.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, bindparam, false, or_, select, true, update

from ocrswarm.engine.catalog import Catalog
from ocrswarm.engine.queue import QUEUE_ORDER, task_in
from ocrswarm.engine.schema import task_state_is, tasks
from ocrswarm.engine.states import State


@dataclass(frozen=True, slots=True)
class ReadyTask:
    """A page task just marked as published: what its message says."""

    task_id: int
    attempt: int  # the attempt it will be (1 for the first)
    executable: str
    job_id: str
    workspace_id: str
    mets_path: Path
    page_id: str
    input_file_grps: tuple[str, ...]
    output_file_grps: tuple[str, ...]
    parameters: Mapping[str, Any]


_READY = (
    select(tasks.c.id)
    .where(
        task_state_is(State.QUEUED),
        tasks.c.published == false(),
        or_(tasks.c.not_before.is_(None), tasks.c.not_before <= bindparam("b_now")),
    )
    .order_by(*QUEUE_ORDER)
    .limit(bindparam("b_limit"))
    .with_for_update(skip_locked=True, of=tasks, key_share=True)
    .cte("ready")
    .prefix_with("MATERIALIZED", dialect="postgresql")
)
_MARKS = {
    postgresql: update(tasks)
    .where(task_in(_READY, postgresql=postgresql), task_state_is(State.QUEUED))
    .values(published=True)
    .returning(
        tasks.c.id,
        tasks.c.job_id,
        tasks.c.workflow_job_id,
        tasks.c.page_id,
        tasks.c.attempts,
        tasks.c.priority,
        tasks.c.page_index,
        tasks.c.step,
    )
    for postgresql in (False, True)
}


def take_ready(connection: Connection, catalog: Catalog, now: float, limit: int) -> list[ReadyTask]:
    """Mark up to `limit` ready tasks as published, best first, and return them."""
    if limit < 1:
        return []
    rows = sorted(
        connection.execute(
            _MARKS[connection.dialect.name == "postgresql"], {"b_now": now, "b_limit": limit}
        ),
        key=lambda r: (-r.priority, r.workflow_job_id, r.page_index, r.step),
    )
    job_facts = catalog.jobs(connection, {row.job_id for row in rows})
    ready = []
    for row in rows:
        job = job_facts[row.job_id]
        workflow = catalog.workflow(connection, row.workflow_job_id)
        ready.append(
            ReadyTask(
                task_id=row.id,
                attempt=row.attempts + 1,
                executable=job.executable,
                job_id=job.uid,
                workspace_id=workflow.workspace_id,
                mets_path=workflow.mets_path,
                page_id=row.page_id,
                input_file_grps=job.input_file_grps,
                output_file_grps=job.output_file_grps,
                parameters=job.parameters,
            )
        )
    return ready


def unpublish(connection: Connection, task_ids: Collection[int]) -> int:
    """Clear the mark of these tasks (the broker did not take them); how many were QUEUED."""
    if not task_ids:
        return 0
    result = connection.execute(
        update(tasks)
        .where(tasks.c.id.in_(sorted(task_ids)), task_state_is(State.QUEUED))
        .values(published=False)
    )
    return result.rowcount


def unpublish_all(connection: Connection) -> int:
    """Clear the mark of every QUEUED task, so that all of them are sent again; how many."""
    result = connection.execute(
        update(tasks)
        .where(task_state_is(State.QUEUED), tasks.c.published == true())
        .values(published=False)
    )
    return result.rowcount
