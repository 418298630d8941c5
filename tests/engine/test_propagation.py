"""Jobs that depend on other jobs (OCR-D's depends_on) and how outcomes travel down."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrswarm.engine.records import TaskResult
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store
from ocrswarm.engine.workflow import parse_workflow
from ocrswarm.errors import UsageError
from tests.engine.storetools import output_of, pages, result_of, run_until_empty, submit


def processing_job(store: Store, task: str, page_count: int = 2, **options: object) -> str:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    [step] = parse_workflow(task)
    return store.submit_processing_job(workspace_id, step, pages(page_count), **options).id  # type: ignore[arg-type]


def test_a_dependent_job_waits_then_reads_its_dependencys_outputs(store: Store) -> None:
    first = processing_job(store, "dummy -I OCR-D-IMG -O A")
    second = processing_job(store, "dummy -I A -O B", depends_on=[first])
    assert store.job(second).state is State.CACHED
    assert store.job(second).depends_on == (first,)
    one, two = store.claim("w", limit=5)
    assert {one.job_id, two.job_id} == {first}
    store.complete([result_of(one)])
    assert store.claim("w") == []  # `second` waits for the whole of `first`
    store.complete([result_of(two)])
    assert store.job(first).state is State.SUCCESS
    leases = store.claim("w", limit=5)
    assert {lease.job_id for lease in leases} == {second}
    assert [lease.inputs for lease in leases] == [output_of(one), output_of(two)]


def test_a_workflow_can_depend_on_a_workflow(store: Store) -> None:
    first = submit(store, page_count=2)
    second = submit(store, "dummy -I C -O D", page_count=2, depends_on=[first.id])
    assert store.workflow_job(second.id).state is State.CACHED
    assert store.workflow_job(second.id).depends_on == first.processing_job_ids
    handed_out = run_until_empty(store)
    last_steps = {lease.page_id: lease for lease in handed_out if lease.output_file_grps == ("C",)}
    dependents = [lease for lease in handed_out if lease.workflow_job_id == second.id]
    assert handed_out[-2:] == dependents  # only after the whole first workflow
    assert [lease.inputs for lease in dependents] == [
        output_of(last_steps["P0001"]),
        output_of(last_steps["P0002"]),
    ]
    assert store.workflow_job(second.id).state is State.SUCCESS


def test_failure_cancels_the_chain_of_dependents(store: Store) -> None:
    first = processing_job(store, "dummy -I OCR-D-IMG -O A", page_count=1)
    second = processing_job(store, "dummy -I A -O B", page_count=1, depends_on=[first])
    third = processing_job(store, "dummy -I B -O C", page_count=1, depends_on=[second])
    unrelated = processing_job(store, "dummy -I OCR-D-IMG -O Z", page_count=1)
    [lease, other] = store.claim("w", limit=2)
    assert (lease.job_id, other.job_id) == (first, unrelated)
    store.fail(lease.task_id, lease.token, "broken", retry=False)
    assert [store.job(j).state for j in (first, second, third)] == [
        State.FAILED,
        State.CANCELLED,
        State.CANCELLED,
    ]
    [task] = store.page_tasks(third)
    assert task.error == f"job {second}, which this job depends on, ended CANCELLED"
    assert store.complete([result_of(other)]) == [True]  # the rest goes on
    with pytest.raises(UsageError, match=f"job {first}, which this job depends on, ended FAILED"):
        store.retry_failed(second)
    with pytest.raises(UsageError, match="ended FAILED"):
        processing_job(store, "dummy -I A -O Y", depends_on=[first])
    # fix the first job, then its dependents
    assert store.retry_failed(first) == 1
    with pytest.raises(
        UsageError, match=f"job {second}, which this job depends on, ended CANCELLED"
    ):
        store.retry_failed(third)
    assert store.retry_failed(second) == 1
    assert store.retry_failed(third) == 1
    assert [store.job(j).state for j in (second, third)] == [State.CACHED, State.CACHED]
    assert len(run_until_empty(store)) == 3
    assert [store.job(j).state for j in (first, second, third)] == [State.SUCCESS] * 3


def test_cancelling_a_dependency_cancels_its_dependents(store: Store) -> None:
    first = processing_job(store, "dummy -I OCR-D-IMG -O A")
    second = processing_job(store, "dummy -I A -O B", depends_on=[first])
    store.cancel(first)
    assert store.job(second).state is State.CANCELLED


def test_depending_on_a_finished_job_does_not_wait(store: Store) -> None:
    first = processing_job(store, "dummy -I OCR-D-IMG -O A", page_count=1)
    [lease] = store.claim("w")
    store.complete([TaskResult(lease.task_id, lease.token, output_of(lease))])
    second = processing_job(store, "dummy -I A -O B", page_count=1, depends_on=[first])
    assert store.job(second).state is State.QUEUED
    [next_lease] = store.claim("w")
    assert next_lease.inputs == output_of(lease)


def test_depending_on_an_unknown_job(store: Store) -> None:
    with pytest.raises(UsageError, match="no job with id 'ghost'"):
        processing_job(store, "dummy -I OCR-D-IMG -O A", depends_on=["ghost"])
