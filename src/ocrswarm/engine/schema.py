"""The store's tables, in SQLAlchemy Core; the migrations under `migrations/` build exactly these.

Public ids (job and workflow job ids, workspace ids) are strings; everything the queue touches
on its hot path joins on small integer keys. A standalone processing job owns a
`workflow_jobs` row of kind "processing" too: that row holds its pages' DAG and dependencies,
so one code path schedules both kinds; only workflow rows of kind "workflow" are shown as
workflow jobs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ColumnElement,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    false,
    literal,
    or_,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

KIND_WORKFLOW = "workflow"
KIND_PROCESSING = "processing"

metadata = MetaData(naming_convention=NAMING_CONVENTION)

workspaces = Table(
    "workspaces",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("mets_path", Text, nullable=False, unique=True),
    Column("directory", Text, nullable=False),
    Column("created_at", Double, nullable=False),
)

# A workflow job, or the hidden holder of one standalone processing job (kind "processing").
workflow_jobs = Table(
    "workflow_jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(36), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),
    Column("workspace_id", String(36), ForeignKey("workspaces.id"), nullable=False),
    Column("fingerprint", String),
    Column("description", Text),
    Column("priority", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    # True while jobs this one depends on have not all succeeded
    Column("held", Boolean, nullable=False),
    # for each step, the earlier steps that produce its inputs (the per-page DAG)
    Column("step_predecessors", JSON, nullable=False),
    Column("page_count", Integer, nullable=False),
    # the page selection it was submitted with (OCR-D's page_id), None for every page
    Column("page_selection", Text),
    Column("created_at", Double, nullable=False),
    Index(None, "workspace_id", "fingerprint"),
)

# A processing job: one step of a workflow job over all its pages.
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("uid", String(36), nullable=False, unique=True),
    Column("workflow_job_id", Integer, ForeignKey("workflow_jobs.id"), nullable=False),
    Column("step", Integer, nullable=False),
    Column("executable", String, nullable=False),
    Column("parameters", JSON, nullable=False),
    Column("input_file_grps", JSON, nullable=False),
    Column("output_file_grps", JSON, nullable=False),
    Column("max_attempts", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("cancel_requested", Boolean, nullable=False),
    Column("created_at", Double, nullable=False),
    Column("finished_at", Double),
    Index(None, "workflow_job_id", "step", unique=True),
)

# A workflow job waits (its tasks CACHED) until every job it depends on has succeeded.
job_dependencies = Table(
    "job_dependencies",
    metadata,
    Column("workflow_job_id", Integer, ForeignKey("workflow_jobs.id"), primary_key=True),
    Column("depends_on_job_id", Integer, ForeignKey("jobs.id"), primary_key=True),
    Index(None, "depends_on_job_id"),
)

# One page of one processing job. `waiting` counts what it still waits for: predecessor
# steps of its page that have not succeeded, plus one while its workflow job is held.
# tasks and files carry no foreign keys: they are written only together with the rows they
# point to, and on PostgreSQL a foreign key costs a trigger per inserted row (it doubled
# the time of a bulk submission and of every completion).
tasks = Table(
    "tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("job_id", Integer, nullable=False),
    Column("workflow_job_id", Integer, nullable=False),
    Column("step", Integer, nullable=False),
    Column("page_index", Integer, nullable=False),
    Column("page_id", String, nullable=False),
    Column("priority", Integer, nullable=False),
    Column("state", String(16), nullable=False),
    Column("waiting", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("not_before", Double),
    Column("token", String),
    Column("worker_id", String),
    Column("lease_until", Double),
    Column("error", Text),
    Column("traceback", Text),
    Column("started_at", Double),
    Column("finished_at", Double),
    # True while a QUEUED task's message is in RabbitMQ (distributed mode only); a task that
    # goes back to QUEUED (retry, expired lease) is unpublished and sent again
    Column("published", Boolean, nullable=False, server_default=false()),
    Index(None, "workflow_job_id", "page_index", "step", unique=True),
    # which states a job's tasks are in: seeks in this index (propagation._state_probe)
    Index(None, "job_id", "state", "id"),
)


def task_state_is(state: str) -> ColumnElement[bool]:
    """`tasks.state = '<state>'` with the value written into the SQL, as both databases need
    to use the partial indexes below (a bound parameter could be any state)."""
    return tasks.c.state == literal(str(state), literal_execute=True)


def _partial(state: str) -> dict[str, Any]:
    where = tasks.c.state == literal(str(state))
    return {"sqlite_where": where, "postgresql_where": where}


# The queue, in claim order: priority first, then submission, page and step order. Only
# QUEUED tasks not yet handed to RabbitMQ are in it, so it stays small and no other lookup
# by state is lured into it.
_READY = and_(tasks.c.state == literal("QUEUED"), tasks.c.published == false())
Index(
    "ix_tasks_queue",
    tasks.c.priority.desc(),
    tasks.c.workflow_job_id,
    tasks.c.page_index,
    tasks.c.step,
    sqlite_where=_READY,
    postgresql_where=_READY,
)
# The leases, for expiry and release.
Index("ix_tasks_leases", tasks.c.lease_until, **_partial("RUNNING"))

# Every file the engine knows per page: the METS inputs a workflow was submitted with
# (registered already) and the outputs of succeeded tasks (the METS writer's outbox until
# registered). Inputs of later steps are resolved from here, never from the METS.
files = Table(
    "files",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("workspace_id", String(36), nullable=False),
    Column("workflow_job_id", Integer, nullable=False),
    Column("job_id", Integer),
    Column("task_id", Integer),
    Column("page_id", String, nullable=False),
    Column("file_grp", String, nullable=False),
    Column("file_id", String, nullable=False),
    Column("mimetype", String, nullable=False),
    Column("href", Text, nullable=False),
    Column("registered", Boolean, nullable=False),
    # page first: with a stale plan, PostgreSQL still has to narrow by page, never by
    # workflow job alone (which grows to every file of a big job)
    Index(None, "page_id", "workflow_job_id"),
    Index(None, "workspace_id", "registered", "id"),
)


# Worker machines of a distributed deployment (`ocrswarm worker`): what each runs, how many
# pages at a time, and when it was last heard of (heartbeat).
workers = Table(
    "workers",
    metadata,
    Column("id", String, primary_key=True),
    Column("host", String, nullable=False),
    Column("pid", Integer, nullable=False),
    Column("processors", JSON, nullable=False),
    Column("capacity", Integer, nullable=False),
    Column("running", Integer, nullable=False),
    Column("started_at", Double, nullable=False),
    Column("last_seen", Double, nullable=False),
    Column("stopped_at", Double),
)


def task_state_in(states: Iterable[str]) -> ColumnElement[bool]:
    """`tasks.state IN (…)` written as equalities, which executemany statements accept."""
    return or_(*(tasks.c.state == state for state in states))
