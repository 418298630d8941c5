"""GET /workers and the registered workers in /metrics, over a real store."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workerregistry import WORKER_ALIVE_SECONDS
from ocrswarm.server.auth import Role, token_digest
from ocrswarm.server.errors import install_error_handlers
from ocrswarm.server.routes import observe, workers
from ocrswarm.server.settings import ServerSettings, TokenEntry


class PastClock:
    """Real time, minus `ago` seconds: registers workers heard of a while ago."""

    def __init__(self) -> None:
        self.ago = 0.0

    def __call__(self) -> float:
        return time.time() - self.ago


@pytest.fixture
def clock() -> PastClock:
    return PastClock()


@pytest.fixture
def store(tmp_path: Path, clock: PastClock) -> Iterator[Store]:
    with Store(sqlite_url(tmp_path / "state.sqlite"), clock=clock) as opened:
        opened.migrate()
        yield opened


@pytest.fixture
def client(store: Store, tmp_path: Path) -> Iterator[TestClient]:
    app = FastAPI()
    tokens = (TokenEntry("watcher", token_digest("reader-token"), Role.READER),)
    app.state.settings = ServerSettings(data_dir=tmp_path, tokens=tokens)
    app.state.service = SimpleNamespace(store=store, workers_alive=lambda: 1)
    install_error_handlers(app)
    app.include_router(workers.router)
    app.include_router(observe.router)
    with TestClient(app, headers={"Authorization": "Bearer reader-token"}) as opened:
        yield opened


def register(store: Store, name: str, capacity: int, processors: tuple[str, ...] = ()) -> None:
    store.register_worker(
        name, host=f"host-{name}", pid=100, processors=processors, capacity=capacity
    )


def test_workers_are_listed_with_whether_they_are_alive(
    client: TestClient, store: Store, clock: PastClock
) -> None:
    clock.ago = WORKER_ALIVE_SECONDS + 60
    register(store, "vanished", 8)
    clock.ago = 0
    register(store, "busy", 4, ("ocrd-dummy",))
    assert store.worker_heartbeat("busy", running=3)
    register(store, "stopped", 2)
    store.stop_worker("stopped")

    answer = client.get("/workers")

    assert answer.status_code == 200
    listed = {worker["id"]: worker for worker in answer.json()["workers"]}
    assert {name: worker["alive"] for name, worker in listed.items()} == {
        "vanished": False,
        "busy": True,
        "stopped": False,
    }
    busy = listed["busy"]
    assert (busy["host"], busy["pid"], busy["processors"]) == ("host-busy", 100, ["ocrd-dummy"])
    assert (busy["capacity"], busy["running"], busy["stopped_at"]) == (4, 3, None)
    assert busy["last_seen"] >= busy["started_at"]
    assert listed["stopped"]["stopped_at"] is not None
    assert {k: answer.json()[k] for k in ("alive", "capacity", "running")} == {
        "alive": 1,
        "capacity": 4,
        "running": 3,
    }


def test_no_worker_is_an_empty_list(client: TestClient) -> None:
    assert client.get("/workers").json() == {"alive": 0, "capacity": 0, "running": 0, "workers": []}


def test_workers_need_a_token(client: TestClient) -> None:
    assert client.get("/workers", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_metrics_count_the_alive_workers_and_their_capacity(
    client: TestClient, store: Store, clock: PastClock
) -> None:
    clock.ago = WORKER_ALIVE_SECONDS + 60
    register(store, "vanished", 8)
    clock.ago = 0
    register(store, "a", 4)
    register(store, "b", 2)
    assert store.worker_heartbeat("b", running=1)

    text = client.get("/metrics").text

    values = {
        sample.name: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
    assert values["ocrswarm_registered_workers_alive"] == 2
    assert values["ocrswarm_registered_workers_capacity"] == 6
    assert values["ocrswarm_registered_workers_running"] == 1
