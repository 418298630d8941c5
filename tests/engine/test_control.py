"""Cancelling jobs, retrying their failed pages, and what happens to work in flight."""

from __future__ import annotations

import pytest

from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store
from tests.engine.conftest import FakeClock
from tests.engine.storetools import result_of, run_until_empty, submit


def test_cancel_stops_everything_waiting_and_keeps_a_late_success(store: Store) -> None:
    job = submit(store, page_count=3)
    running, failing = store.claim("w", limit=2)
    assert store.cancel(job.id) == 7  # 9 tasks, 2 running
    assert store.claim("w") == []
    assert store.workflow_job(job.id).state is State.RUNNING  # two still run
    assert store.complete([result_of(running)]) == [True]  # the work is kept …
    assert store.claim("w") == []  # … but its later steps were cancelled
    assert store.fail(failing.task_id, failing.token, "boom") is State.CANCELLED  # no retry
    progress = store.progress(job.id)
    assert progress.counts == {State.SUCCESS: 1, State.CANCELLED: 8}
    assert store.workflow_job(job.id).state is State.CANCELLED
    assert [s.state for s in progress.steps] == [State.CANCELLED] * 3
    assert store.cancel(job.id) == 0


def test_a_cancelled_jobs_expired_or_released_leases_end_cancelled(
    store: Store, clock: FakeClock
) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A", page_count=2)
    store.claim("w1", lease_seconds=5)
    store.claim("w2", lease_seconds=50)
    store.cancel(job.id)
    clock.advance(6)
    assert store.expire_leases() == 1
    assert store.release("w2") == 1
    assert store.progress(job.id).counts == {State.CANCELLED: 2}
    assert store.claim("w") == []


def test_cancelling_one_step_cancels_the_later_steps_of_its_pages(store: Store) -> None:
    job = submit(store, page_count=2)
    first, _ = store.claim("w", limit=2)
    store.complete([result_of(first)])
    second_step = job.processing_job_ids[1]
    assert store.cancel(second_step) == 4  # step 2 and 3 of both pages
    assert store.job(second_step).state is State.CANCELLED
    assert store.job(job.processing_job_ids[0]).state is State.RUNNING
    run_until_empty(store)  # nothing left but the running step-1 task
    assert store.progress(job.id).counts == {State.SUCCESS: 1, State.RUNNING: 1, State.CANCELLED: 4}


def test_retry_failed_runs_failed_pages_and_their_later_steps_again(store: Store) -> None:
    job = submit(store, page_count=3, max_attempts=2)
    failing = {lease.page_id: lease for lease in store.claim("w", limit=3)}
    for page_id in ("P0001", "P0003"):
        lease = failing.pop(page_id)
        store.fail(lease.task_id, lease.token, "broken", retry=False)
    store.complete([result_of(lease) for lease in failing.values()])
    run_until_empty(store)
    assert store.workflow_job(job.id).state is State.FAILED
    assert store.retry_failed(job.processing_job_ids[1]) == 0  # their step 1 is not retried
    assert store.retry_failed(job.id) == 6  # 2 failed + 4 cancelled later steps
    assert store.workflow_job(job.id).state is State.RUNNING
    assert store.failed_tasks(job.id) == []
    handed_out = run_until_empty(store)
    assert sorted((lease.page_id, lease.attempt) for lease in handed_out) == [
        ("P0001", 1),
        ("P0001", 1),
        ("P0001", 1),
        ("P0003", 1),
        ("P0003", 1),
        ("P0003", 1),
    ]
    assert store.workflow_job(job.id).state is State.SUCCESS
    assert store.progress(job.id).pages_done == 3


def test_retry_failed_of_a_cancelled_job_runs_what_did_not_succeed(store: Store) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A\ndummy -I A -O B", page_count=2)
    failing, running = store.claim("w", limit=2)
    store.fail(failing.task_id, failing.token, "broken", retry=False)
    store.cancel(job.id)
    store.complete([result_of(running)])
    assert store.workflow_job(job.id).state is State.FAILED
    assert store.retry_failed(job.id) == 3  # the failed step 1, both step-2 tasks
    assert len(run_until_empty(store)) == 3
    assert store.progress(job.id).pages_done == 2
    assert store.workflow_job(job.id).state is State.SUCCESS


def test_retry_never_revives_a_task_whose_earlier_step_stays_unsuccessful(store: Store) -> None:
    diamond = "dummy -I OCR-D-IMG -O A\ndummy -I A -O B\ndummy -I A -O C\ndummy -I B,C -O D"
    job = submit(store, diamond, page_count=1)
    [a] = store.claim("w")
    store.complete([result_of(a)])
    b, c = store.claim("w", limit=2)
    store.fail(b.task_id, b.token, "broken", retry=False)  # cancels D
    store.cancel(job.processing_job_ids[2])  # C is running: nothing to cancel now
    assert store.fail(c.task_id, c.token, "stopped") is State.CANCELLED
    assert store.retry_failed(job.processing_job_ids[1]) == 1  # B; D also needs C
    assert len(run_until_empty(store)) == 1
    assert store.workflow_job(job.id).state is State.CANCELLED
    assert store.retry_failed(job.id) == 2  # C and D
    assert len(run_until_empty(store)) == 2
    assert store.workflow_job(job.id).state is State.SUCCESS


@pytest.mark.parametrize("target", ["workflow", "step"])
def test_priority_of_a_workflow_job(store: Store, target: str) -> None:
    job = submit(store, page_count=1)
    store.set_priority(job.id if target == "workflow" else job.processing_job_ids[2], -4)
    assert store.workflow_job(job.id).priority == -4
    assert {store.job(uid).priority for uid in job.processing_job_ids} == {-4}
