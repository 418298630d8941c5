"""Alembic's entry point: runs the revisions on the connection that `database.migrate` passes.

New revisions: write them by hand under versions/ (one file per schema change, ids in
order); tests/engine/test_migrations.py checks that the head matches `schema.metadata`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from ocrswarm.engine.schema import metadata

connection: Connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying tables
)
with context.begin_transaction():
    context.run_migrations()
