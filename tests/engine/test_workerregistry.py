"""The workers table: register, heartbeat, stop, list — on SQLite and PostgreSQL."""

from __future__ import annotations

from ocrswarm.engine.store import Store
from tests.engine.conftest import FakeClock


def test_a_worker_registers_beats_and_stops(store: Store, clock: FakeClock) -> None:
    store.register_worker("h1:10:ab", host="h1", pid=10, processors=["ocrd-dummy"], capacity=4)
    clock.advance(5)
    store.register_worker("h2:11:cd", host="h2", pid=11, processors=[], capacity=2)
    clock.advance(5)
    assert store.worker_heartbeat("h1:10:ab", running=3)
    assert not store.worker_heartbeat("nobody", running=1)
    first, second = store.list_workers()
    assert (first.id, first.host, first.pid, first.processors) == (
        "h1:10:ab",
        "h1",
        10,
        ("ocrd-dummy",),
    )
    assert (first.capacity, first.running, first.last_seen) == (4, 3, clock.now)
    assert first.alive(clock.now, timeout=30) and second.processors == ()
    clock.advance(60)
    assert not second.alive(clock.now, timeout=30)
    store.stop_worker("h1:10:ab")
    stopped = store.list_workers()[0]
    assert stopped.stopped_at == clock.now and stopped.running == 0
    assert not stopped.alive(clock.now, timeout=30)


def test_registering_an_id_again_starts_afresh(store: Store, clock: FakeClock) -> None:
    store.register_worker("w", host="h", pid=1, processors=["a"], capacity=1)
    store.stop_worker("w")
    clock.advance(1)
    store.register_worker("w", host="h", pid=2, processors=["b"], capacity=3)
    (worker,) = store.list_workers()
    assert (worker.pid, worker.processors, worker.capacity) == (2, ("b",), 3)
    assert worker.stopped_at is None and worker.started_at == clock.now
