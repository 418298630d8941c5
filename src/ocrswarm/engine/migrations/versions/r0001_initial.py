"""The first schema: workspaces, workflow jobs, processing jobs, dependencies, tasks, files.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None


def _only(state: str) -> dict[str, Any]:
    """A partial index's condition, for both databases."""
    where = sa.text(f"state = '{state}'")
    return {"sqlite_where": where, "postgresql_where": where}


def upgrade() -> None:
    op.create_table(
        "workspaces",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("mets_path", sa.Text(), nullable=False),
        sa.Column("directory", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_workspaces"),
        sa.UniqueConstraint("mets_path", name="uq_workspaces_mets_path"),
    )
    op.create_table(
        "workflow_jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("fingerprint", sa.String(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("held", sa.Boolean(), nullable=False),
        sa.Column("step_predecessors", sa.JSON(), nullable=False),
        sa.Column("page_count", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"], ["workspaces.id"], name="fk_workflow_jobs_workspace_id_workspaces"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_workflow_jobs"),
        sa.UniqueConstraint("uid", name="uq_workflow_jobs_uid"),
    )
    op.create_index(
        "ix_workflow_jobs_workspace_id_fingerprint",
        "workflow_jobs",
        ["workspace_id", "fingerprint"],
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("uid", sa.String(36), nullable=False),
        sa.Column("workflow_job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("executable", sa.String(), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("input_file_grps", sa.JSON(), nullable=False),
        sa.Column("output_file_grps", sa.JSON(), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.ForeignKeyConstraint(
            ["workflow_job_id"], ["workflow_jobs.id"], name="fk_jobs_workflow_job_id_workflow_jobs"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("uid", name="uq_jobs_uid"),
    )
    op.create_index(
        "ix_jobs_workflow_job_id_step", "jobs", ["workflow_job_id", "step"], unique=True
    )
    op.create_table(
        "job_dependencies",
        sa.Column("workflow_job_id", sa.Integer(), nullable=False),
        sa.Column("depends_on_job_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["depends_on_job_id"], ["jobs.id"], name="fk_job_dependencies_depends_on_job_id_jobs"
        ),
        sa.ForeignKeyConstraint(
            ["workflow_job_id"],
            ["workflow_jobs.id"],
            name="fk_job_dependencies_workflow_job_id_workflow_jobs",
        ),
        sa.PrimaryKeyConstraint("workflow_job_id", "depends_on_job_id", name="pk_job_dependencies"),
    )
    op.create_index(
        "ix_job_dependencies_depends_on_job_id", "job_dependencies", ["depends_on_job_id"]
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("workflow_job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("page_index", sa.Integer(), nullable=False),
        sa.Column("page_id", sa.String(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("waiting", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.Double(), nullable=True),
        sa.Column("token", sa.String(), nullable=True),
        sa.Column("worker_id", sa.String(), nullable=True),
        sa.Column("lease_until", sa.Double(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("started_at", sa.Double(), nullable=True),
        sa.Column("finished_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_tasks"),
    )
    op.create_index(
        "ix_tasks_queue",
        "tasks",
        [sa.text("priority DESC"), "workflow_job_id", "page_index", "step"],
        **_only("QUEUED"),
    )
    op.create_index("ix_tasks_leases", "tasks", ["lease_until"], **_only("RUNNING"))
    op.create_index(
        "ix_tasks_workflow_job_id_page_index_step",
        "tasks",
        ["workflow_job_id", "page_index", "step"],
        unique=True,
    )
    op.create_index("ix_tasks_job_id_state_id", "tasks", ["job_id", "state", "id"])
    op.create_table(
        "files",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("workspace_id", sa.String(36), nullable=False),
        sa.Column("workflow_job_id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("page_id", sa.String(), nullable=False),
        sa.Column("file_grp", sa.String(), nullable=False),
        sa.Column("file_id", sa.String(), nullable=False),
        sa.Column("mimetype", sa.String(), nullable=False),
        sa.Column("href", sa.Text(), nullable=False),
        sa.Column("registered", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_files"),
    )
    op.create_index("ix_files_page_id_workflow_job_id", "files", ["page_id", "workflow_job_id"])
    op.create_index(
        "ix_files_workspace_id_registered_id", "files", ["workspace_id", "registered", "id"]
    )


def downgrade() -> None:
    for table in ("files", "tasks", "job_dependencies", "jobs", "workflow_jobs", "workspaces"):
        op.drop_table(table)
