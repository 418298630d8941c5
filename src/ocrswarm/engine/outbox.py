"""The METS writer's outbox: outputs of succeeded tasks not yet registered in their METS.

Outputs are recorded in the same transaction that marks their task SUCCESS, so none is
lost; the single METS writer takes them in completion order, saves the METS, then marks
them registered. After a crash between the save and the mark, the writer sees them again
and must skip file IDs its METS already has: registration is idempotent by file ID.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from sqlalchemy import Connection, false, select, update

from ocrswarm.engine.catalog import Catalog
from ocrswarm.engine.records import FileRef, Registration
from ocrswarm.engine.schema import files

_CHUNK = 5000  # ids per statement, far below every database's bound-parameter limit


def pending_registrations(
    connection: Connection, catalog: Catalog, workspace_id: str, limit: int
) -> list[Registration]:
    """Up to `limit` outputs of `workspace_id` waiting for the METS, oldest first.

    Rows become records one by one (never a list of both): a batch is the METS writer's
    biggest piece of memory."""
    result = connection.execute(
        select(
            files.c.id,
            files.c.job_id,
            files.c.task_id,
            files.c.page_id,
            files.c.file_grp,
            files.c.file_id,
            files.c.mimetype,
            files.c.href,
        )
        .where(files.c.workspace_id == workspace_id, files.c.registered == false())
        .order_by(files.c.id)
        .limit(limit)
    )
    registrations = []
    for row in result:
        facts = catalog.job(connection, row.job_id)
        registrations.append(
            Registration(
                id=row.id,
                file=FileRef(
                    sys.intern(row.file_grp),  # a few values, each in every row
                    row.file_id,
                    sys.intern(row.mimetype),
                    row.href,
                    row.page_id,
                ),
                task_id=row.task_id,
                job_id=facts.uid,
                executable=facts.executable,
                parameters=facts.parameters,
            )
        )
    return registrations


def mark_registered(connection: Connection, registration_ids: Sequence[int]) -> None:
    """Note that these outputs are now in their METS."""
    ids = sorted(set(registration_ids))
    for start in range(0, len(ids), _CHUNK):
        connection.execute(
            update(files).where(files.c.id.in_(ids[start : start + _CHUNK])).values(registered=True)
        )
