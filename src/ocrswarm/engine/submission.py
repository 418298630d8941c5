"""Creating jobs in bulk: a workflow job of N steps over P pages is N·P page tasks.

Everything goes in with a few executemany INSERTs inside one transaction (no ORM objects,
no per-row round trips, rows made as they go in, 2,000 at a time), so 10,000 pages × 3
steps take well under a second and memory does not grow with the pages. Each task
starts QUEUED when it waits for nothing, else CACHED with `waiting` = its predecessor steps
on the page, plus one for every task while the jobs its workflow job depends on have not all
succeeded.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Table, insert, select
from sqlalchemy.dialects import postgresql, sqlite

from ocrswarm.engine.lookup import require_workspace, resolve_job
from ocrswarm.engine.records import PageInputs
from ocrswarm.engine.schema import (
    files,
    job_dependencies,
    jobs,
    tasks,
    workflow_jobs,
    workspaces,
)
from ocrswarm.engine.states import State, check_transition, job_state
from ocrswarm.engine.workflow import WorkflowStep, mets_input_file_grps, step_predecessors
from ocrswarm.errors import UsageError

_INSERT_CHUNK = 2000  # rows per executemany


def workspace_id_for(mets_path: Path) -> str:
    """The id of the workspace whose METS is at `mets_path`: the same path, the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, mets_path.resolve().as_uri()))


def add_workspace(connection: Connection, now: float, mets_path: Path) -> str:
    """Register a workspace by its METS path (made absolute, symlinks resolved); its id."""
    path = Path(mets_path).resolve()
    workspace_id = workspace_id_for(path)
    values = {
        "id": workspace_id,
        "mets_path": str(path),
        "directory": str(path.parent),
        "created_at": now,
    }
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    connection.execute(dialect.insert(workspaces).values(values).on_conflict_do_nothing())
    return workspace_id


def submit(
    connection: Connection,
    now: float,
    *,
    kind: str,
    workspace_id: str,
    steps: Sequence[WorkflowStep],
    pages: Sequence[PageInputs],
    priority: int,
    max_attempts: int,
    description: str | None,
    depends_on: Sequence[str],
    fingerprint: str | None,
    page_selection: str | None = None,
) -> tuple[str, list[str]]:
    """Create a workflow job (`kind` workflow or processing) with its jobs and tasks.

    `page_selection` is kept as it was given (OCR-D's page_id), to be shown with the job.
    Returns the workflow job's id and its processing jobs' ids, by step.
    """
    _check_steps(steps)
    _check_pages(pages)
    if max_attempts < 1:
        raise UsageError(f"max_attempts must be at least 1, not {max_attempts}")
    require_workspace(connection, workspace_id)
    dependency_ids = _dependency_job_ids(connection, depends_on)
    held = _held(connection, dependency_ids)
    predecessors = step_predecessors(steps)
    task_states = []
    for preds in predecessors:
        waiting = len(preds) + int(held)
        state = State.CACHED if waiting else State.QUEUED
        check_transition(State.UNSET, state)
        task_states.append((state, waiting))
    job_states = [job_state({state: len(pages)}) for state, _ in task_states]
    uid = str(uuid.uuid4())
    workflow_id = connection.execute(
        insert(workflow_jobs)
        .values(
            uid=uid,
            kind=kind,
            workspace_id=workspace_id,
            fingerprint=fingerprint,
            description=description,
            priority=priority,
            state=job_state({state: 1 for state in job_states}),
            held=held,
            step_predecessors=[list(p) for p in predecessors],
            page_count=len(pages),
            page_selection=page_selection,
            created_at=now,
        )
        .returning(workflow_jobs.c.id)
    ).scalar_one()
    job_uids = [str(uuid.uuid4()) for _ in steps]
    job_ids = [
        connection.execute(
            insert(jobs)
            .values(
                uid=job_uids[index],
                workflow_job_id=workflow_id,
                step=index,
                executable=step.executable,
                parameters=dict(step.parameters),
                input_file_grps=list(step.input_file_grps),
                output_file_grps=list(step.output_file_grps),
                max_attempts=max_attempts,
                state=job_states[index],
                cancel_requested=False,
                created_at=now,
            )
            .returning(jobs.c.id)
        ).scalar_one()
        for index, step in enumerate(steps)
    ]
    if dependency_ids:
        connection.execute(
            insert(job_dependencies),
            [{"workflow_job_id": workflow_id, "depends_on_job_id": d} for d in dependency_ids],
        )
    _insert_in_chunks(
        connection,
        tasks,
        (
            {
                "job_id": job_ids[step],
                "workflow_job_id": workflow_id,
                "step": step,
                "page_index": page_index,
                "page_id": page.page_id,
                "priority": priority,
                "state": task_states[step][0],
                "waiting": task_states[step][1],
                "attempts": 0,
            }
            for page_index, page in enumerate(pages)
            for step in range(len(steps))
        ),
    )
    wanted_grps = set(mets_input_file_grps(steps))
    file_rows = (
        {
            "workspace_id": workspace_id,
            "workflow_job_id": workflow_id,
            "page_id": ref.page_id,
            "file_grp": ref.file_grp,
            "file_id": ref.file_id,
            "mimetype": ref.mimetype,
            "href": ref.href,
            "registered": True,
        }
        for page in pages
        for ref in page.files
        if ref.file_grp in wanted_grps
    )
    _insert_in_chunks(connection, files, file_rows)
    return uid, job_uids


def _insert_in_chunks(connection: Connection, table: Table, rows: Iterable[dict[str, Any]]) -> None:
    """executemany in chunks: the parameters of a job of 100,000 pages are never all in
    memory at once."""
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, _INSERT_CHUNK)):
        connection.execute(insert(table), chunk)


def _check_steps(steps: Sequence[WorkflowStep]) -> None:
    if not steps:
        raise UsageError("a job needs at least one step")
    producer: dict[str, int] = {}
    for index, step in enumerate(steps):
        for grp in step.output_file_grps:
            if grp in producer:
                raise UsageError(
                    f"fileGrp {grp} is produced by steps {producer[grp] + 1} and {index + 1}"
                )
            producer[grp] = index
    for index, step in enumerate(steps):
        for grp in step.input_file_grps:
            if producer.get(grp, -1) >= index:
                raise UsageError(
                    f"step {index + 1} ({step.executable}) reads fileGrp {grp}, which only "
                    f"step {producer[grp] + 1} produces"
                )


def _check_pages(pages: Sequence[PageInputs]) -> None:
    if not pages:
        raise UsageError("no pages to process")
    seen: set[str] = set()
    for page in pages:
        if page.page_id in seen:
            raise UsageError(f"page {page.page_id} is listed twice")
        seen.add(page.page_id)
        for ref in page.files:
            if ref.page_id != page.page_id:
                raise UsageError(
                    f"file {ref.file_id} belongs to page {ref.page_id}, not {page.page_id}"
                )


def _dependency_job_ids(connection: Connection, depends_on: Sequence[str]) -> list[int]:
    job_ids: set[int] = set()
    for uid in depends_on:
        job_ids.update(resolve_job(connection, uid).job_ids)
    return sorted(job_ids)


def _held(connection: Connection, dependency_ids: Sequence[int]) -> bool:
    """Whether the new job must wait; UsageError if a dependency already failed.

    The dependencies' rows are locked, so a dependency finishing concurrently either sees
    this job (and releases or cancels it) or is seen finished here.
    """
    if not dependency_ids:
        return False
    rows = connection.execute(
        select(jobs.c.uid, jobs.c.state)
        .where(jobs.c.id.in_(dependency_ids))
        .order_by(jobs.c.id)
        .with_for_update(key_share=True)
    ).all()
    for row in rows:
        if row.state in (State.FAILED, State.CANCELLED):
            raise UsageError(f"job {row.uid}, which this job would depend on, ended {row.state}")
    return any(row.state != State.SUCCESS for row in rows)
