"""The workers of a distributed deployment (`ocrswarm worker` processes), beyond the spec.

Each worker registers itself in the shared store and renews its row by heartbeat; the
store is the one source of truth, so this list is right whichever server answers. A worker
counts as alive while it has not stopped cleanly and was heard of within
`WORKER_ALIVE_SECONDS` (a few missed heartbeats); a vanished one stays listed, not alive.
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends
from pydantic import BaseModel, Field

from ocrswarm.engine.records import WorkerInfo
from ocrswarm.engine.store import Store
from ocrswarm.engine.workerregistry import WORKER_ALIVE_SECONDS
from ocrswarm.server.auth import Role, require
from ocrswarm.server.deps import StoreDep

router = APIRouter(tags=["workers"])


class WorkerStatus(BaseModel):
    """One `ocrswarm worker` process as it last reported itself."""

    id: str
    host: str
    pid: int
    processors: list[str] = Field(description="the processors it runs; empty: every one")
    capacity: int = Field(description="pages it processes at a time")
    running: int = Field(description="pages under way at its last heartbeat")
    started_at: float = Field(description="seconds since the epoch")
    last_seen: float = Field(description="its last heartbeat, seconds since the epoch")
    stopped_at: float | None = Field(default=None, description="when it stopped cleanly")
    alive: bool = Field(
        description=f"not stopped, and heard of within the last {WORKER_ALIVE_SECONDS:g} s"
    )


class WorkerList(BaseModel):
    alive: int = Field(description="workers alive")
    capacity: int = Field(description="pages the alive workers process at a time")
    running: int = Field(description="pages under way on the alive workers")
    workers: list[WorkerStatus] = Field(description="every registered worker, oldest first")


def worker_status(worker: WorkerInfo, now: float) -> WorkerStatus:
    return WorkerStatus(
        id=worker.id,
        host=worker.host,
        pid=worker.pid,
        processors=list(worker.processors),
        capacity=worker.capacity,
        running=worker.running,
        started_at=worker.started_at,
        last_seen=worker.last_seen,
        stopped_at=worker.stopped_at,
        alive=worker.alive(now, WORKER_ALIVE_SECONDS),
    )


def registered_workers(store: Store, now: float | None = None) -> WorkerList:
    """Every registered worker, and what the alive ones add up to (for /workers, /metrics)."""
    now = time.time() if now is None else now
    listed = [worker_status(worker, now) for worker in store.list_workers()]
    alive = [worker for worker in listed if worker.alive]
    return WorkerList(
        alive=len(alive),
        capacity=sum(worker.capacity for worker in alive),
        running=sum(worker.running for worker in alive),
        workers=listed,
    )


@router.get(
    "/workers",
    dependencies=[Depends(require(Role.READER))],
    summary="The registered workers (ocrswarm worker), whether alive, and their capacity",
)
def list_workers(store: StoreDep) -> WorkerList:
    return registered_workers(store)
