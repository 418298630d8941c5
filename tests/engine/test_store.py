"""Submitting jobs and reading them back, on SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrswarm.engine.lookup import JobNotFoundError, WorkspaceNotFoundError
from ocrswarm.engine.records import FileRef, PageInputs
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store
from ocrswarm.engine.workflow import parse_workflow, workflow_fingerprint
from ocrswarm.errors import UsageError
from tests.engine.conftest import FakeClock
from tests.engine.storetools import THREE_STEPS, image, pages, result_of, submit


def test_the_same_mets_path_is_the_same_workspace(store: Store, tmp_path: Path) -> None:
    first = store.add_workspace(tmp_path / "a" / "mets.xml")
    assert store.add_workspace(tmp_path / "a" / ".." / "a" / "mets.xml") == first
    assert store.add_workspace(tmp_path / "b" / "mets.xml") != first
    info = store.workspace(first)
    assert info.mets_path == tmp_path / "a" / "mets.xml"
    assert info.directory == tmp_path / "a"


def test_a_workflow_job_is_one_processing_job_per_step(store: Store) -> None:
    job = submit(store, page_count=4, description="three dummies", priority=5)
    assert job.state is State.QUEUED
    assert job.page_count == 4
    assert [s.output_file_grps for s in job.steps] == [("A",), ("B",), ("C",)]
    assert len(set(job.processing_job_ids)) == 3
    assert (job.description, job.priority) == ("three dummies", 5)
    first, second, third = (store.job(uid) for uid in job.processing_job_ids)
    assert (first.state, second.state, third.state) == (State.QUEUED, State.CACHED, State.CACHED)
    assert first.counts == {State.QUEUED: 4}
    assert second.counts == {State.CACHED: 4}
    assert first.workflow_job_id == job.id
    assert (first.step, third.step) == (0, 2)
    assert third.input_file_grps == ("B",)
    assert store.workflow_job(job.id) == job


def test_progress_of_a_new_job(store: Store) -> None:
    job = submit(store, page_count=5)
    progress = store.progress(job.id)
    assert progress.counts == {State.QUEUED: 5, State.CACHED: 10}
    assert [s.state for s in progress.steps] == [State.QUEUED, State.CACHED, State.CACHED]
    assert (progress.pages_total, progress.pages_done, progress.pages_pending) == (5, 0, 5)
    assert not progress.finished


def test_a_standalone_processing_job(store: Store) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    [step] = parse_workflow("dummy -I OCR-D-IMG -O OUT")
    job = store.submit_processing_job(workspace_id, step, pages(2), description="one step")
    assert job.workflow_job_id is None
    assert (job.executable, job.state, job.page_count) == ("ocrd-dummy", State.QUEUED, 2)
    assert store.workflow_jobs() == []
    assert [j.id for j in store.jobs(workspace_id)] == [job.id]
    assert store.progress(job.id).pages_total == 2


def test_a_job_keeps_the_page_selection_it_was_submitted_with(store: Store) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    steps = parse_workflow(THREE_STEPS)
    selection = "P1..P2,//P3.*"
    workflow = store.submit_workflow(workspace_id, steps, pages(3), page_selection=selection)
    assert workflow.page_selection == selection
    assert store.workflow_job(workflow.id).page_selection == selection
    assert {store.job(uid).page_selection for uid in workflow.processing_job_ids} == {selection}
    processing = store.submit_processing_job(workspace_id, steps[0], pages(1), page_selection="P1")
    assert store.job(processing.id).page_selection == "P1"
    every_page = store.submit_processing_job(workspace_id, steps[0], pages(1))
    assert every_page.page_selection is None
    assert [job.page_selection for job in store.jobs(workspace_id)] == [
        selection,
        selection,
        selection,
        "P1",
        None,
    ]


def test_the_statuses_of_many_jobs_in_one_read(store: Store, clock: FakeClock) -> None:
    done = submit(store, "dummy -I OCR-D-IMG -O A\ndummy -I A -O B\n", page_count=2)
    first_step = store.job(done.processing_job_ids[0])
    waiting = submit(store, page_count=1)
    while leases := store.claim("w", executables=None, limit=1):
        if leases[0].workflow_job_id == waiting.id:
            break
        clock.advance(1)
        assert store.complete([result_of(lease) for lease in leases]) == [True]
    statuses = store.job_statuses(
        [first_step.id, waiting.processing_job_ids[2], "no-such-job", done.id],
        [done.id, waiting.id, first_step.id],
    )
    assert set(statuses) == {first_step.id, waiting.processing_job_ids[2], done.id, waiting.id}
    last_step = store.job(done.processing_job_ids[1])
    assert statuses[done.id].state is State.SUCCESS
    assert statuses[done.id].finished_at == last_step.finished_at is not None
    assert statuses[done.id].workspace_id == done.workspace_id
    assert statuses[first_step.id].finished_at == store.job(first_step.id).finished_at
    assert statuses[first_step.id].finished_at < last_step.finished_at  # type: ignore[operator]
    assert (statuses[waiting.id].state, statuses[waiting.id].finished_at) == (State.RUNNING, None)
    assert statuses[waiting.processing_job_ids[2]].state is State.CACHED
    assert statuses[done.id].outputs_pending and statuses[first_step.id].outputs_pending
    store.mark_registered([r.id for r in store.pending_registrations(done.workspace_id, 100)])
    statuses = store.job_statuses([first_step.id], [done.id])
    assert not statuses[done.id].outputs_pending and not statuses[first_step.id].outputs_pending
    assert store.job_statuses() == {}


@pytest.mark.parametrize(
    ("page_list", "message"),
    [
        ([], "no pages"),
        ([PageInputs("P1"), PageInputs("P1")], "page P1 is listed twice"),
        ([PageInputs("P1", [image("P2")])], "belongs to page P2, not P1"),
    ],
)
def test_bad_page_lists_are_refused(
    store: Store, page_list: list[PageInputs], message: str
) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    with pytest.raises(UsageError, match=message):
        store.submit_workflow(workspace_id, parse_workflow(THREE_STEPS), page_list)


def test_bad_steps_and_unknown_workspaces_are_refused(store: Store) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    twice = parse_workflow("dummy -I IMG -O A\ndummy -I IMG -O A")
    with pytest.raises(UsageError, match="fileGrp A is produced by steps 1 and 2"):
        store.submit_workflow(workspace_id, twice, pages(1))
    backwards = parse_workflow("dummy -I B -O A\ndummy -I IMG -O B")
    with pytest.raises(UsageError, match="reads fileGrp B, which only step 2 produces"):
        store.submit_workflow(workspace_id, backwards, pages(1))
    with pytest.raises(UsageError, match="max_attempts"):
        store.submit_workflow(workspace_id, parse_workflow(THREE_STEPS), pages(1), max_attempts=0)
    with pytest.raises(WorkspaceNotFoundError):
        store.submit_workflow("nope", parse_workflow(THREE_STEPS), pages(1))
    assert store.workflow_jobs() == []  # nothing half-created


def test_unknown_job_ids(store: Store) -> None:
    for call in (store.job, store.workflow_job, store.progress, store.cancel, store.retry_failed):
        with pytest.raises(JobNotFoundError, match="no job with id 'nope'"):
            call("nope")


def test_job_and_workflow_ids_are_not_interchangeable(store: Store) -> None:
    job = submit(store)
    with pytest.raises(UsageError, match="is a workflow job"):
        store.job(job.id)
    with pytest.raises(UsageError, match="is a processing job"):
        store.workflow_job(job.processing_job_ids[0])


def test_a_run_finds_its_earlier_workflow_job(store: Store) -> None:
    steps = parse_workflow(THREE_STEPS)
    fingerprint = workflow_fingerprint(steps, ["P0001", "P0002"])
    here = store.add_workspace(Path("/data/here/mets.xml"))
    there = store.add_workspace(Path("/data/there/mets.xml"))
    assert store.find_workflow_job(here, fingerprint) is None
    first = store.submit_workflow(here, steps, pages(2), fingerprint=fingerprint)
    store.submit_workflow(here, steps, pages(2), fingerprint="other")
    assert store.find_workflow_job(here, fingerprint) == first.id
    assert store.find_workflow_job(there, fingerprint) is None
    newer = store.submit_workflow(here, steps, pages(2), fingerprint=fingerprint)
    assert store.find_workflow_job(here, fingerprint) == newer.id
    assert [w.id for w in store.workflow_jobs(here)][::2] == [first.id, newer.id]


def test_a_reopened_store_sees_everything(store: Store, store_url: str) -> None:
    job = submit(store, page_count=2)
    store.close()
    with Store(store_url) as again:
        assert again.workflow_job(job.id) == job


def test_files_outside_the_workflows_inputs_are_not_kept(store: Store) -> None:
    workspace_id = store.add_workspace(Path("/data/ws/mets.xml"))
    extra = FileRef("OCR-D-GT-SEG", "GT_P1", "application/vnd.prima.page+xml", "gt/P1.xml", "P1")
    page = PageInputs("P1", [image("P1"), extra])
    store.submit_workflow(workspace_id, parse_workflow(THREE_STEPS), [page])
    [lease] = store.claim("w")
    assert [ref.file_id for ref in lease.inputs] == ["OCR-D-IMG_P1"]


def test_a_page_is_done_when_all_its_last_steps_succeeded(store: Store) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A\ndummy -I A -O B\ndummy -I A -O C", 3)
    leases = store.claim("w", limit=3)
    store.complete([result_of(lease) for lease in leases])
    b1, c1, b2, c2, b3, c3 = store.claim("w", limit=6)
    store.complete([result_of(b1), result_of(c1), result_of(b2)])
    store.fail(b3.task_id, b3.token, "broken", retry=False)
    progress = store.progress(job.id)
    assert (progress.pages_done, progress.pages_failed, progress.pages_pending) == (1, 1, 1)
    assert store.progress(job.processing_job_ids[1]).pages_done == 2  # step B alone
    store.complete([result_of(c2), result_of(c3)])
    progress = store.progress(job.id)
    assert (progress.pages_done, progress.pages_failed, progress.finished) == (2, 1, True)
