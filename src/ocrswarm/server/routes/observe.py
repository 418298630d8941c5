"""Health and Prometheus metrics: what a load balancer and a monitoring system ask.

Metrics are read from the store at scrape time (one collector per app, in the app's own
registry), so they are right whichever process moved the work, and survive a restart.
Task latency comes from the run times of the tasks of finished jobs, each job read once.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from pydantic import BaseModel, Field

from ocrswarm import __version__
from ocrswarm.engine.service import EngineService
from ocrswarm.engine.states import FINISHED, State
from ocrswarm.engine.store import Store
from ocrswarm.errors import NotFoundError
from ocrswarm.server.auth import Role, require
from ocrswarm.server.deps import get_service, get_store
from ocrswarm.server.routes.workers import registered_workers

router = APIRouter(tags=["observe"])

# Buckets of task run time in seconds: a dummy page takes milliseconds, OCR seconds to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_QUEUE_STATES = (State.CACHED, State.QUEUED, State.RUNNING)


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    store: bool
    workers_alive: int = Field(description="worker processes alive; 0 makes the server unavailable")
    version: str


@router.get(
    "/health",
    summary="Whether the server can do work (no authentication)",
    responses={
        200: {"model": Health, "description": "the server can do work"},
        503: {"model": Health, "description": "the store or the workers are down"},
    },
)
def health(
    store: Annotated[Store, Depends(get_store)],
    service: Annotated[EngineService, Depends(get_service)],
) -> JSONResponse:
    reachable = store_reachable(store)
    alive = workers_alive(service)
    ok = reachable and alive > 0
    body = Health(
        status="ok" if ok else "unavailable",
        store=reachable,
        workers_alive=alive,
        version=__version__,
    )
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)


def workers_alive(service: EngineService) -> int:
    """How many worker processes the engine service has alive; 0 when it cannot say (an
    engine that fails to answer cannot do work either)."""
    try:
        return service.workers_alive()
    except Exception:
        return 0


def store_reachable(store: Store) -> bool:
    """Whether a query reaches the store (a lookup of a workspace that does not exist)."""
    try:
        store.workspace("-health-check-")
    except NotFoundError:
        return True
    except Exception:
        return False
    return True


@router.get(
    "/metrics",
    dependencies=[Depends(require(Role.READER))],
    summary="Metrics in Prometheus text format",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}}}},
)
def metrics(
    request: Request,
    store: Annotated[Store, Depends(get_store)],
    service: Annotated[EngineService, Depends(get_service)],
) -> Response:
    registry = _registry(request, store, service)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


_registry_lock = threading.Lock()


def _registry(request: Request, store: Store, service: EngineService) -> CollectorRegistry:
    """The app's own registry (made at the first scrape), so apps in one process never mix."""
    with _registry_lock:
        registry: CollectorRegistry | None = getattr(request.app.state, "metrics_registry", None)
        if registry is None:
            registry = CollectorRegistry(auto_describe=True)
            registry.register(StoreCollector(store, service))
            request.app.state.metrics_registry = registry
        return registry


class StoreCollector(Collector):
    """Reads the engine's counts from the store whenever Prometheus scrapes."""

    def __init__(self, store: Store, service: EngineService) -> None:
        self._store = store
        self._service = service
        self._latency = Histogram(
            "ocrswarm_task_seconds",
            "Run time of finished page tasks",
            ["processor"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self._timed_jobs: set[str] = set()
        self._lock = threading.Lock()

    def collect(self) -> Iterator[Metric]:
        done = GaugeMetricFamily(
            "ocrswarm_pages_done", "Page tasks that succeeded", labels=["processor"]
        )
        failed = GaugeMetricFamily(
            "ocrswarm_pages_failed", "Page tasks that failed for good", labels=["processor"]
        )
        queued = GaugeMetricFamily(
            "ocrswarm_queue_depth", "Page tasks waiting or running", labels=["processor", "state"]
        )
        totals: dict[str, dict[State, int]] = defaultdict(lambda: defaultdict(int))
        jobs = self._store.jobs()
        for job in jobs:
            for state, count in job.counts.items():
                totals[job.executable][state] += count
        for processor, counts in sorted(totals.items()):
            done.add_metric([processor], counts[State.SUCCESS])
            failed.add_metric([processor], counts[State.FAILED])
            for state in _QUEUE_STATES:
                queued.add_metric([processor, state.value], counts[state])
        yield done
        yield failed
        yield queued
        yield GaugeMetricFamily(
            "ocrswarm_workers_alive", "Worker processes alive", value=workers_alive(self._service)
        )
        yield from self._registered_workers()
        with self._lock:
            for job in jobs:
                if job.state in FINISHED and job.id not in self._timed_jobs:
                    self._time_tasks(job.id, job.executable)
            yield from self._latency.collect()

    def _registered_workers(self) -> Iterator[Metric]:
        """The `ocrswarm worker` processes of a distributed deployment (GET /workers)."""
        summary = registered_workers(self._store)
        for name, value, what in (
            ("alive", summary.alive, "Registered ocrswarm workers heard of lately"),
            ("capacity", summary.capacity, "Pages the alive registered workers process at once"),
            ("running", summary.running, "Pages under way on the alive registered workers"),
        ):
            yield GaugeMetricFamily(f"ocrswarm_registered_workers_{name}", what, value=value)

    def _time_tasks(self, job_id: str, processor: str) -> None:
        for task in self._store.page_tasks(job_id):
            if task.started_at is not None and task.finished_at is not None:
                seconds = max(0.0, task.finished_at - task.started_at)
                self._latency.labels(processor=processor).observe(seconds)
        self._timed_jobs.add(job_id)
