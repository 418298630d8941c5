"""GET /health and GET /metrics over a real store; the test plays the workers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ocrswarm import __version__
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.server.auth import Role, token_digest
from ocrswarm.server.errors import install_error_handlers
from ocrswarm.server.routes import observe
from ocrswarm.server.settings import ServerSettings, TokenEntry
from tests.engine.conftest import FakeClock
from tests.engine.storetools import result_of, submit
from tests.server.conftest import ServerProcess, wait_for

WORKFLOW = "dummy -I OCR-D-IMG -O A\nswarm-binarize -I A -O B\n"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(sqlite_url(tmp_path / "state.sqlite"), clock=clock) as opened:
        opened.migrate()
        yield opened


def app_over(
    store: Store, tmp_path: Path, workers: int | None, tokens: tuple[TokenEntry, ...] = ()
) -> FastAPI:
    app = FastAPI()
    app.state.settings = ServerSettings(data_dir=tmp_path, tokens=tokens)
    install_error_handlers(app)
    app.include_router(observe.router)
    service = SimpleNamespace(store=store)
    if workers is not None:
        service.workers_alive = lambda: workers
    app.state.service = service
    return app


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app_over(store, tmp_path, workers=2)) as opened:
        yield opened


def test_health_is_ok_with_a_store_and_workers(client: TestClient) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "store": True,
        "workers_alive": 2,
        "version": __version__,
    }


def test_health_is_503_without_workers(store: Store, tmp_path: Path) -> None:
    with TestClient(app_over(store, tmp_path, workers=0)) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable"


def test_health_is_503_when_the_engine_cannot_count_workers(store: Store, tmp_path: Path) -> None:
    with TestClient(app_over(store, tmp_path, workers=None)) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["workers_alive"] == 0


def test_health_of_a_live_server_counts_its_workers(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        answer = wait_for(http, "/health", lambda body: body["workers_alive"] == server.workers)
        metrics = http.get("/metrics").text
    assert answer["status"] == "ok"
    assert answer["workers_alive"] == server.workers
    assert f"ocrswarm_workers_alive {float(server.workers)}" in metrics


def test_health_is_503_when_the_store_is_unreachable(tmp_path: Path) -> None:
    gone = Store(sqlite_url(tmp_path / "no-such-directory" / "state.sqlite"))
    with TestClient(app_over(gone, tmp_path, workers=2)) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["store"] is False


def samples(client: TestClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    found = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_metrics_count_pages_and_queue_per_processor(
    store: Store, clock: FakeClock, client: TestClient
) -> None:
    workflow = submit(store, WORKFLOW, page_count=3)
    dummy, binarize = (step.executable for step in workflow.steps)
    first, second, third = store.claim("w", limit=3)
    clock.advance(0.2)
    store.complete([result_of(first), result_of(second)])
    store.fail(third.task_id, third.token, "broken page", retry=False)
    found = samples(client)
    assert found[("ocrswarm_pages_done", (("processor", dummy),))] == 2
    assert found[("ocrswarm_pages_failed", (("processor", dummy),))] == 1
    assert found[("ocrswarm_pages_done", (("processor", binarize),))] == 0
    queue = {
        (labels[0][1], labels[1][1]): value
        for (name, labels), value in found.items()
        if name == "ocrswarm_queue_depth"
    }
    assert queue[(binarize, "QUEUED")] == 2  # the next step of the two done pages
    assert queue[(binarize, "CACHED")] == 0  # the failed page's next step was cancelled
    assert queue[(dummy, "RUNNING")] == 0
    assert found[("ocrswarm_workers_alive", ())] == 2


def test_metrics_time_the_tasks_of_finished_jobs(
    store: Store, clock: FakeClock, client: TestClient
) -> None:
    workflow = submit(store, "dummy -I OCR-D-IMG -O A\n", page_count=2)
    (dummy,) = (step.executable for step in workflow.steps)
    leases = store.claim("w", limit=2)
    clock.advance(0.3)
    store.complete([result_of(lease) for lease in leases])
    labels = (("processor", dummy),)
    found = samples(client)
    assert found[("ocrswarm_task_seconds_count", labels)] == 2
    assert found[("ocrswarm_task_seconds_sum", labels)] == pytest.approx(0.6)
    assert found[("ocrswarm_task_seconds_bucket", (("le", "0.25"), *labels))] == 0
    assert found[("ocrswarm_task_seconds_bucket", (("le", "0.5"), *labels))] == 2
    again = samples(client)  # each finished job is timed once
    assert again[("ocrswarm_task_seconds_count", labels)] == 2


def test_two_apps_keep_their_metrics_apart(store: Store, tmp_path: Path) -> None:
    submit(store, page_count=1)
    empty = Store(sqlite_url(tmp_path / "other.sqlite"))
    empty.migrate()
    with (
        TestClient(app_over(store, tmp_path, workers=1)) as busy,
        TestClient(app_over(empty, tmp_path, workers=1)) as idle,
    ):
        assert any(name == "ocrswarm_queue_depth" for name, _ in samples(busy))
        assert not any(name == "ocrswarm_queue_depth" for name, _ in samples(idle))
    empty.close()


def test_health_needs_no_token_but_metrics_do(store: Store, tmp_path: Path) -> None:
    tokens = (TokenEntry("prometheus", token_digest("scrape"), Role.READER),)
    with TestClient(app_over(store, tmp_path, workers=1, tokens=tokens)) as client:
        assert client.get("/health").status_code == 200
        assert client.get("/metrics").status_code == 401
        scraped = client.get("/metrics", headers={"Authorization": "Bearer scrape"})
        assert scraped.status_code == 200
