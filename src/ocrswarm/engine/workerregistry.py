"""The workers table: who consumes the queues of a distributed deployment.

Each `ocrswarm worker` process registers itself at start, reports by heartbeat how many
pages it is processing, and marks itself stopped on a clean stop. A worker that vanished
keeps its row with an old `last_seen`; its page tasks come back by lease expiry, which
does not depend on this table. The table is for people and the API (GET /workers).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, delete, insert, select, update

from ocrswarm.engine.records import WorkerInfo
from ocrswarm.engine.schema import workers

HEARTBEAT_SECONDS = 10.0  # how often a worker renews its row
WORKER_ALIVE_SECONDS = 3 * HEARTBEAT_SECONDS  # a worker not heard of for longer is gone


def register(
    connection: Connection,
    now: float,
    worker_id: str,
    *,
    host: str,
    pid: int,
    processors: Sequence[str],
    capacity: int,
) -> None:
    """Record a starting worker (a reused id starts afresh)."""
    connection.execute(delete(workers).where(workers.c.id == worker_id))
    connection.execute(
        insert(workers).values(
            id=worker_id,
            host=host,
            pid=pid,
            processors=list(processors),
            capacity=capacity,
            running=0,
            started_at=now,
            last_seen=now,
            stopped_at=None,
        )
    )


def heartbeat(connection: Connection, now: float, worker_id: str, running: int) -> bool:
    """Note that the worker is alive with `running` pages; False if it is not registered."""
    result = connection.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(last_seen=now, running=running, stopped_at=None)
    )
    return result.rowcount > 0


def stop(connection: Connection, now: float, worker_id: str) -> None:
    """Note a clean stop."""
    connection.execute(
        update(workers)
        .where(workers.c.id == worker_id)
        .values(last_seen=now, running=0, stopped_at=now)
    )


def list_workers(connection: Connection) -> list[WorkerInfo]:
    """Every worker that ever registered, oldest first."""
    rows = connection.execute(select(workers).order_by(workers.c.started_at, workers.c.id))
    return [
        WorkerInfo(
            id=row.id,
            host=row.host,
            pid=row.pid,
            processors=tuple(row.processors),
            capacity=row.capacity,
            running=row.running,
            started_at=row.started_at,
            last_seen=row.last_seen,
            stopped_at=row.stopped_at,
        )
        for row in rows
    ]
