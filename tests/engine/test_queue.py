"""The page-task queue: leases, tokens, the DAG per page, retries with backoff, expiry."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ocrswarm.engine.queue import InvalidResultError, RetryPolicy, TaskNotFoundError
from ocrswarm.engine.records import FileRef, PageInputs, TaskLease, TaskResult
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store
from ocrswarm.engine.workflow import parse_workflow
from tests.engine.conftest import FakeClock
from tests.engine.storetools import (
    THREE_STEPS,
    image,
    output_of,
    pages,
    result_of,
    run_until_empty,
    submit,
)


def by_page(leases: list[TaskLease]) -> dict[str, TaskLease]:
    return {lease.page_id: lease for lease in leases}


def test_a_lease_is_self_contained(store: Store) -> None:
    job = submit(store, page_count=2, mets="/data/book/mets.xml")
    first, second = store.claim("w1", limit=5)
    assert (first.page_id, second.page_id) == ("P0001", "P0002")
    assert first.executable == "ocrd-dummy"
    assert first.job_id == job.processing_job_ids[0]
    assert first.workflow_job_id == job.id
    assert first.inputs == [image("P0001")]
    assert (first.input_file_grps, first.output_file_grps) == (("OCR-D-IMG",), ("A",))
    assert first.workspace_dir == Path("/data/book")
    assert (first.attempt, first.max_attempts) == (1, 3)
    assert first.token != second.token
    page_job = first.page_job()
    assert page_job.inputs[0].path == Path("/data/book/OCR-D-IMG/OCR-D-IMG_P0001.png")
    assert TaskLease.from_dict(first.to_dict()) == first
    assert store.job(job.processing_job_ids[0]).state is State.RUNNING


def test_no_barrier_between_steps(store: Store) -> None:
    submit(store, page_count=3)
    leases = by_page(store.claim("w", limit=3))
    assert store.complete([result_of(leases["P0002"])]) == [True]
    [next_step] = store.claim("w", limit=3)
    assert (next_step.page_id, next_step.output_file_grps) == ("P0002", ("B",))
    assert next_step.inputs == output_of(leases["P0002"])  # the predecessor's output
    assert store.claim("w") == []  # pages 1 and 3 still run step 1


def test_inputs_from_the_mets_and_from_predecessors(store: Store) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    steps = parse_workflow(
        "dummy -I IMG -O A\ndummy -I A -O B\ndummy -I IMG -O C\ndummy -I B,C,IMG,GT -O D"
    )
    page = PageInputs("P1", [image("P1", "IMG"), image("P1", "GT")])
    store.submit_workflow(workspace_id, steps, [page])
    outputs: dict[str, list[FileRef]] = {}
    while leases := store.claim("w", limit=4):
        for lease in leases:
            assert lease.output_file_grps[0] not in outputs
            outputs[lease.output_file_grps[0]] = output_of(lease)
            if lease.output_file_grps == ("D",):
                assert lease.inputs == [
                    *outputs["B"],
                    *outputs["C"],
                    image("P1", "IMG"),
                    image("P1", "GT"),
                ]
        store.complete([result_of(lease) for lease in leases])
    assert sorted(outputs) == ["A", "B", "C", "D"]


def test_a_step_waits_for_all_its_predecessors(store: Store) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    steps = parse_workflow("dummy -I IMG -O A\ndummy -I IMG -O B\ndummy -I A,B -O C")
    store.submit_workflow(workspace_id, steps, [PageInputs("P1", [image("P1", "IMG")])])
    a, b = store.claim("w", limit=5)
    store.complete([result_of(a)])
    assert store.claim("w") == []
    store.complete([result_of(b)])
    [c] = store.claim("w")
    assert c.output_file_grps == ("C",)


def test_claim_order_priority_then_job_then_page(store: Store) -> None:
    low = submit(store, "dummy -I OCR-D-IMG -O A", page_count=2, mets="/data/low/mets.xml")
    high = submit(store, "dummy -I OCR-D-IMG -O A", 2, mets="/data/high/mets.xml", priority=9)
    later = submit(store, "dummy -I OCR-D-IMG -O A", page_count=1, mets="/data/later/mets.xml")
    order = [(lease.workflow_job_id, lease.page_id) for lease in store.claim("w", limit=10)]
    assert order == [
        (high.id, "P0001"),
        (high.id, "P0002"),
        (low.id, "P0001"),
        (low.id, "P0002"),
        (later.id, "P0001"),
    ]


def test_priority_can_change(store: Store) -> None:
    first = submit(store, "dummy -I OCR-D-IMG -O A", page_count=1, mets="/data/a/mets.xml")
    second = submit(store, "dummy -I OCR-D-IMG -O A", page_count=1, mets="/data/b/mets.xml")
    store.set_priority(second.processing_job_ids[0], 3)
    assert store.workflow_job(second.id).priority == 3
    assert [lease.workflow_job_id for lease in store.claim("w", limit=2)] == [second.id, first.id]


def test_pages_go_through_all_steps_depth_first(store: Store) -> None:
    job = submit(store, page_count=4)
    handed_out = run_until_empty(store, batch=2)
    assert len(handed_out) == 12
    assert len({lease.task_id for lease in handed_out}) == 12
    assert store.workflow_job(job.id).state is State.SUCCESS
    progress = store.progress(job.id)
    assert (progress.pages_done, progress.pages_failed, progress.finished) == (4, 0, True)
    assert all(store.job(uid).state is State.SUCCESS for uid in job.processing_job_ids)


def test_claim_by_executable(store: Store) -> None:
    submit(store, "dummy -I OCR-D-IMG -O A\nswarm-dummy -I A -O B", page_count=2)
    assert store.claim("w", executables=["ocrd-swarm-dummy"]) == []
    assert store.claim("w", executables=[]) == []
    [first] = store.claim("w", executables={"ocrd-dummy"})
    store.complete([result_of(first)])
    [second] = store.claim("w", executables=["ocrd-swarm-dummy"])
    assert second.page_id == first.page_id


def test_completion_is_idempotent(store: Store) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A", page_count=1)
    [lease] = store.claim("w")
    assert store.complete([result_of(lease), result_of(lease)]) == [True, True]
    assert store.complete([result_of(lease)]) == [True]
    workspace_id = store.workflow_job(job.id).workspace_id
    assert [r.file for r in store.pending_registrations(workspace_id, 10)] == output_of(lease)


def test_a_stale_token_is_rejected(store: Store, clock: FakeClock) -> None:
    submit(store, "dummy -I OCR-D-IMG -O A", page_count=1)
    [old] = store.claim("w1", lease_seconds=30)
    clock.advance(31)
    assert store.expire_leases() == 1
    [new] = store.claim("w2")
    assert new.task_id == old.task_id and new.token != old.token
    assert new.attempt == 2
    assert store.renew("w1", [old.token]) == set()
    assert store.complete([result_of(old)]) == [False]
    assert store.fail(old.task_id, old.token, "late") is State.RUNNING  # changes nothing
    assert store.complete([result_of(new)]) == [True]
    forged = TaskResult(new.task_id + 1, new.token, [])
    assert store.complete([forged, TaskResult(new.task_id, "garbage", [])]) == [False, False]


def test_renewing_keeps_the_lease(store: Store, clock: FakeClock) -> None:
    submit(store, "dummy -I OCR-D-IMG -O A", page_count=2)
    mine, theirs = store.claim("w1", limit=2, lease_seconds=10)
    clock.advance(8)
    assert store.renew("w1", [mine.token], lease_seconds=10) == {mine.token}
    assert store.renew("w2", [theirs.token]) == set()  # not w2's lease
    clock.advance(8)
    assert store.expire_leases() == 1  # theirs, not mine
    assert store.complete([result_of(mine)]) == [True]


def test_failures_retry_with_backoff_then_fail_for_good(store_url: str, clock: FakeClock) -> None:
    with Store(store_url, clock=clock, retry_policy=RetryPolicy(2.0, 5.0)) as store:
        job = submit(store, page_count=2, max_attempts=3)
        leases = by_page(store.claim("w", limit=2))
        first = leases["P0001"]
        assert store.fail(first.task_id, first.token, "boom", "Traceback: 1") is State.QUEUED
        assert store.claim("w") == []  # backing off for 2 s
        clock.advance(2)
        [second] = store.claim("w")
        assert (second.task_id, second.attempt) == (first.task_id, 2)
        assert store.fail(second.task_id, second.token, "boom again") is State.QUEUED
        clock.advance(3.9)
        assert store.claim("w") == []  # 4 s now
        clock.advance(0.1)
        [third] = store.claim("w")
        assert third.attempt == 3
        assert (
            store.fail(third.task_id, third.token, "still broken", "Traceback: 3") is State.FAILED
        )
        [failed] = store.failed_tasks(job.id)
        assert (failed.page_id, failed.executable, failed.attempts) == ("P0001", "ocrd-dummy", 3)
        assert (failed.error, failed.traceback) == ("still broken", "Traceback: 3")
        assert policy_delays() == [2.0, 4.0, 5.0, 5.0]
        # the other page goes on; the failed page's later steps are cancelled
        assert store.complete([result_of(leases["P0002"])]) == [True]
        run_until_empty(store)
        progress = store.progress(job.id)
        assert (progress.pages_done, progress.pages_failed, progress.pages_cancelled) == (1, 1, 0)
        assert progress.counts == {State.SUCCESS: 3, State.FAILED: 1, State.CANCELLED: 2}
        states = [store.job(uid).state for uid in job.processing_job_ids]
        assert states == [State.FAILED, State.CANCELLED, State.CANCELLED]
        assert store.workflow_job(job.id).state is State.FAILED
        cancelled = [t for t in store.page_tasks(job.id) if t.state is State.CANCELLED]
        assert {t.page_id for t in cancelled} == {"P0001"}
        assert all("earlier step of this page" in (t.error or "") for t in cancelled)


def policy_delays() -> list[float]:
    policy = RetryPolicy(2.0, 5.0)
    return [policy.delay(attempt) for attempt in (1, 2, 3, 9)]


def test_a_failure_without_retry_is_final(store: Store) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A", page_count=1)
    [lease] = store.claim("w")
    assert store.fail(lease.task_id, lease.token, "corrupt image", retry=False) is State.FAILED
    assert store.job(job.processing_job_ids[0]).state is State.FAILED
    with pytest.raises(TaskNotFoundError):
        store.fail(999_999, "999999.x", "no such task")


def test_expired_leases_use_attempts(store: Store, clock: FakeClock) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A\ndummy -I A -O B", page_count=1, max_attempts=2)
    for attempt in (1, 2):
        [lease] = store.claim("doomed", lease_seconds=5)
        assert lease.attempt == attempt
        assert store.expire_leases() == 0  # not yet
        clock.advance(6)
        assert store.expire_leases() == 1
    [failed] = store.failed_tasks(job.id)
    assert "lease of worker doomed expired on attempt 2 of 2" in (failed.error or "")
    assert store.progress(job.id).counts == {State.FAILED: 1, State.CANCELLED: 1}


def test_expiring_everything_at_startup(store: Store) -> None:
    submit(store, page_count=3)
    store.claim("dead-run", limit=3, lease_seconds=3600)
    assert store.expire_leases() == 0
    assert store.expire_leases(now=math.inf) == 3
    assert len(store.claim("new-run", limit=5)) == 3


def test_release_gives_leases_back_without_an_attempt(store: Store) -> None:
    job = submit(store, page_count=2)
    leases = store.claim("stopping", limit=2)
    assert store.release("someone-else") == 0
    assert store.release("stopping") == 2
    assert store.complete([result_of(leases[0])]) == [False]
    again = store.claim("next", limit=2)
    assert [lease.attempt for lease in again] == [1, 1]
    assert store.job(job.processing_job_ids[0]).state is State.RUNNING


def test_results_for_foreign_filegrps_or_pages_are_refused(store: Store) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A", page_count=2)
    one, two = store.claim("w", limit=2)
    wrong_grp = TaskResult(one.task_id, one.token, [FileRef("Z", "Z1", "x/y", "Z/1", one.page_id)])
    with pytest.raises(InvalidResultError, match="may only write fileGrps A of its own page"):
        store.complete([result_of(two), wrong_grp])
    wrong_page = TaskResult(one.task_id, one.token, output_of(two))
    with pytest.raises(InvalidResultError):
        store.complete([wrong_page])
    assert store.progress(job.id).counts == {State.RUNNING: 2}  # nothing was recorded
    assert store.complete([result_of(one), result_of(two)]) == [True, True]


def test_pages_without_a_file_in_an_input_filegrp(store: Store) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    steps = parse_workflow("dummy -I OCR-D-IMG,OCR-D-GT -O A")
    store.submit_workflow(workspace_id, steps, pages(2, grps=["OCR-D-IMG"]))
    leases = store.claim("w", limit=2)
    assert [[ref.file_grp for ref in lease.inputs] for lease in leases] == [["OCR-D-IMG"]] * 2


def test_an_empty_claim_or_completion(store: Store) -> None:
    assert store.claim("w") == []
    assert store.claim("w", limit=0) == []
    assert store.complete([]) == []
    assert store.renew("w", []) == set()
    assert store.expire_leases() == 0
    submit(store, THREE_STEPS, page_count=1)
    assert store.claim("w", limit=0) == []
