"""From the ids users see (job, workflow job and workspace ids) to the store's rows."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, select

from ocrswarm.engine.schema import KIND_WORKFLOW, jobs, workflow_jobs, workspaces
from ocrswarm.errors import NotFoundError


class JobNotFoundError(NotFoundError):
    """No workflow job or processing job has the given id."""


class WorkspaceNotFoundError(NotFoundError):
    """No workspace has the given id."""


@dataclass(frozen=True, slots=True)
class Target:
    """What a public job id names: a whole workflow job, or one processing job of it."""

    uid: str
    workflow_id: int
    job_ids: tuple[int, ...]
    is_workflow: bool


def resolve_job(connection: Connection, uid: str) -> Target:
    """The target of a workflow job id or processing job id; JobNotFoundError if neither."""
    workflow_id = connection.execute(
        select(workflow_jobs.c.id).where(
            workflow_jobs.c.uid == uid, workflow_jobs.c.kind == KIND_WORKFLOW
        )
    ).scalar_one_or_none()
    if workflow_id is not None:
        job_ids = connection.execute(
            select(jobs.c.id).where(jobs.c.workflow_job_id == workflow_id).order_by(jobs.c.step)
        ).scalars()
        return Target(uid, workflow_id, tuple(job_ids), is_workflow=True)
    row = connection.execute(
        select(jobs.c.id, jobs.c.workflow_job_id).where(jobs.c.uid == uid)
    ).one_or_none()
    if row is None:
        raise JobNotFoundError(f"no job with id {uid!r}")
    return Target(uid, row.workflow_job_id, (row.id,), is_workflow=False)


def require_workspace(connection: Connection, workspace_id: str) -> None:
    """WorkspaceNotFoundError unless the workspace exists."""
    found = connection.execute(
        select(workspaces.c.id).where(workspaces.c.id == workspace_id)
    ).scalar_one_or_none()
    if found is None:
        raise WorkspaceNotFoundError(f"no workspace with id {workspace_id!r}")
