"""Never two holders: workers claiming at the same time each get different tasks.

Threads and processes, each with its own Store, race to claim and complete every task of a
three-step workflow; every task must be handed out exactly once and every completion
accepted, on SQLite (one writer at a time) and PostgreSQL (row locks, SKIP LOCKED).
"""

from __future__ import annotations

import multiprocessing
import threading
from collections import Counter
from multiprocessing.queues import Queue
from typing import Protocol

import pytest

from ocrswarm.engine.states import FINISHED, State
from ocrswarm.engine.store import Store
from tests.engine.storetools import result_of, submit

PAGES = 60
STEPS = 3


class Waitable(Protocol):
    """A barrier, of threads or of processes."""

    def wait(self, timeout: float | None = None) -> int: ...


def work(url: str, job_id: str, worker_id: str, batch: int, start: Waitable) -> list[int]:
    """Claim and complete until the whole job is done; the task ids this worker got."""
    claimed: list[int] = []
    with Store(url) as store:
        store.claim(worker_id, limit=0)  # connect before the race starts
        start.wait()
        while True:
            leases = store.claim(worker_id, limit=batch)
            if not leases:
                if store.workflow_job(job_id).state in FINISHED:
                    break
                threading.Event().wait(0.002)
                continue
            claimed.extend(lease.task_id for lease in leases)
            threading.Event().wait(0.002)  # the work, outside any transaction
            accepted = store.complete([result_of(lease) for lease in leases])
            if accepted != [True] * len(leases):
                raise AssertionError(f"{worker_id}: completions refused: {accepted}")
    return claimed


def work_in_process(
    url: str, job_id: str, worker_id: str, start: Waitable, results: Queue[list[int]]
) -> None:
    results.put(work(url, job_id, worker_id, 4, start))


def check(store: Store, job_id: str, claims: list[list[int]]) -> None:
    counted = Counter(task_id for claimed in claims for task_id in claimed)
    assert len(counted) == PAGES * STEPS
    assert set(counted.values()) == {1}, "a task was handed out twice"
    assert sum(1 for claimed in claims if claimed) > 1, "only one worker ever got work"
    assert store.workflow_job(job_id).state is State.SUCCESS
    assert store.progress(job_id).pages_done == PAGES


@pytest.mark.timeout(120)
def test_threads_never_share_a_task(store: Store, store_url: str) -> None:
    job = submit(store, page_count=PAGES)
    claims: list[list[int]] = [[] for _ in range(6)]
    start = threading.Barrier(6)

    def run(index: int) -> None:
        claims[index] = work(store_url, job.id, f"thread-{index}", 1 + index % 3, start)

    threads = [threading.Thread(target=run, args=(index,)) for index in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    check(store, job.id, claims)


@pytest.mark.timeout(120)
def test_processes_never_share_a_task(store: Store, store_url: str) -> None:
    job = submit(store, page_count=PAGES)
    context = multiprocessing.get_context("fork")
    results: Queue[list[int]] = context.Queue()
    start = context.Barrier(4)
    processes = [
        context.Process(
            target=work_in_process, args=(store_url, job.id, f"proc-{i}", start, results)
        )
        for i in range(4)
    ]
    for process in processes:
        process.start()
    claims = [results.get(timeout=100) for _ in processes]
    for process in processes:
        process.join(timeout=10)
        assert process.exitcode == 0
    check(store, job.id, claims)
