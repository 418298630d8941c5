"""A job's page selection, published tasks (RabbitMQ), and the workers table.

The queue index leaves out tasks already published to RabbitMQ.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("workflow_jobs") as batch:
        batch.add_column(sa.Column("page_selection", sa.Text(), nullable=True))
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("published", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.drop_index("ix_tasks_queue", table_name="tasks")
    _queue_index("state = 'QUEUED' AND published = false", "state = 'QUEUED' AND published = 0")
    op.create_table(
        "workers",
        sa.Column("id", sa.String(), nullable=False),
        sa.Column("host", sa.String(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("processors", sa.JSON(), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.Double(), nullable=False),
        sa.Column("last_seen", sa.Double(), nullable=False),
        sa.Column("stopped_at", sa.Double(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_workers"),
    )


def _queue_index(postgresql_where: str, sqlite_where: str) -> None:
    op.create_index(
        "ix_tasks_queue",
        "tasks",
        [sa.text("priority DESC"), "workflow_job_id", "page_index", "step"],
        postgresql_where=sa.text(postgresql_where),
        sqlite_where=sa.text(sqlite_where),
    )


def downgrade() -> None:
    op.drop_table("workers")
    op.drop_index("ix_tasks_queue", table_name="tasks")
    _queue_index("state = 'QUEUED'", "state = 'QUEUED'")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("published")
    with op.batch_alter_table("workflow_jobs") as batch:
        batch.drop_column("page_selection")
