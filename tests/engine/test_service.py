"""The server's engine service: every workspace's jobs until stopped, METS per workspace,
finished hooks only once outputs are in the METS, and leases of a dead predecessor taken back."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import event
from sqlalchemy.engine import Engine

from ocrswarm.engine.coordinator import CoordinatorOptions
from ocrswarm.engine.records import FileRef, PageInputs, TaskResult
from ocrswarm.engine.service import EngineService
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.formats.mets import Mets
from ocrswarm.formats.workspace import Workspace
from tests.render import render_page

DUMMY = WorkflowStep("ocrd-swarm-dummy", ("OCR-D-IMG",), ("OUT",), {})


def workspace(root: Path, name: str, count: int) -> Path:
    scans = root / f"{name}-scans"
    scans.mkdir()
    for number in range(1, count + 1):
        render_page(scans / f"p{number}.png", [f"page {number}"], size=(120, 160))
    return Workspace.from_images(scans, root / name).mets_path


def page_inputs(mets_path: Path) -> list[PageInputs]:
    mets = Mets.read(mets_path)
    return [
        PageInputs(page, [FileRef("OCR-D-IMG", f.id, f.mimetype, f.href, page)])
        for page in mets.page_ids
        for f in mets.find_files(file_grp="OCR-D-IMG", page_id=page)
    ]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(sqlite_url(tmp_path / "state.sqlite")) as opened:
        opened.migrate()
        yield opened


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_jobs_of_two_workspaces_run_and_report_once_in_the_mets(
    tmp_path: Path, store: Store
) -> None:
    first, second = workspace(tmp_path, "a", 3), workspace(tmp_path, "b", 2)
    service = EngineService(store, CoordinatorOptions(workers=2))
    finished: list[tuple[str, State, int]] = []
    service.start()
    try:
        jobs = []
        for mets_path in (first, second):
            workspace_id = store.add_workspace(mets_path)
            job = store.submit_processing_job(workspace_id, DUMMY, page_inputs(mets_path))
            service.add_workspace(workspace_id)

            def hook(job_id: str, state: State, mets_path: Path = mets_path) -> None:
                registered = len(Mets.read(mets_path).find_files(file_grp="OUT"))
                finished.append((job_id, state, registered))

            service.on_finished(job.id, hook)
            jobs.append(job.id)
        wait_until(lambda: len(finished) == 2)
        time.sleep(0.5)  # a hook would be called again by now
    finally:
        service.stop()
    assert sorted(finished) == sorted([(jobs[0], State.SUCCESS, 3), (jobs[1], State.SUCCESS, 2)])
    assert [service.job_state(job_id) for job_id in jobs] == [State.SUCCESS, State.SUCCESS]


def test_watching_many_jobs_costs_a_few_queries_per_tick(tmp_path: Path, store: Store) -> None:
    workspace_id = store.add_workspace(tmp_path / "ws" / "mets.xml")  # no METS writer: settled
    pages = [PageInputs("P1", [FileRef("OCR-D-IMG", "IMG_P1", "image/png", "p1.png", "P1")])]
    finished_job = store.submit_processing_job(workspace_id, DUMMY, pages)
    second = WorkflowStep("ocrd-swarm-dummy", ("OUT",), ("OUT2",), {})
    finished_workflow = store.submit_workflow(workspace_id, [DUMMY, second], pages)
    while leases := store.claim("w", limit=10):
        store.complete([TaskResult(lease.task_id, lease.token) for lease in leases])
    waiting = [store.submit_processing_job(workspace_id, DUMMY, pages).id for _ in range(600)]
    service = EngineService(store)  # not started: the test is the job watcher
    called: list[tuple[str, State]] = []
    for job_id in [*waiting, finished_job.id, "no-such-job"]:
        service.on_finished(job_id, lambda job_id, state: called.append((job_id, state)))
    service.on_finished(
        finished_workflow.id, lambda job_id, state: called.append((job_id, state)), workflow=True
    )
    statements: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        service._check_watches()
        first_tick = len(statements)
        service._check_watches()
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert sorted(called) == sorted(
        [(finished_job.id, State.SUCCESS), (finished_workflow.id, State.SUCCESS)]
    )
    # BEGIN, 602 processing job ids in two chunks, one workflow job id, the outbox of the
    # finished jobs' workspace; then 600 unfinished ids left (no outbox to read)
    assert first_tick <= 5, statements
    assert len(statements) - first_tick <= 3, statements[first_tick:]


def test_a_finished_job_is_running_until_its_outputs_are_in_the_mets(
    tmp_path: Path, store: Store
) -> None:
    """Decided by the outbox, not by clocks: the task here completes "in the future" (a
    worker whose clock runs ahead) and still counts as registered once the METS has it."""
    mets_path = workspace(tmp_path, "a", 1)
    workspace_id = store.add_workspace(mets_path)
    job = store.submit_processing_job(workspace_id, DUMMY, page_inputs(mets_path))
    service = EngineService(store)  # not started: the test drives the writer itself
    service.add_workspace(workspace_id)
    assert service.job_state(job.id) is State.QUEUED
    (lease,) = store.claim("w", limit=1)
    output = FileRef("OUT", "OUT_0001", "application/vnd.prima.page+xml", "OUT/1.xml", "PHYS_0001")
    (tmp_path / "a" / "OUT").mkdir()
    (tmp_path / "a" / "OUT" / "1.xml").write_text("<x/>", encoding="utf-8")
    assert store.complete([TaskResult(lease.task_id, lease.token, [output])]) == [True]
    assert store.job(job.id).state is State.SUCCESS
    assert service.job_state(job.id) is State.RUNNING  # its output is still in the outbox
    assert service.settled_states([job.id]) == {job.id: State.RUNNING}
    service.writers.flush(force=True)
    assert service.job_state(job.id) is State.SUCCESS
    assert [f.id for f in Mets.read(mets_path).find_files(file_grp="OUT")] == ["OUT_0001"]


def test_a_job_of_a_workspace_not_written_shows_its_state(tmp_path: Path, store: Store) -> None:
    """A workspace whose METS this server does not write (deleted, or given up on after an
    error) must not keep its finished jobs RUNNING for ever."""
    mets_path = workspace(tmp_path, "a", 1)
    workspace_id = store.add_workspace(mets_path)
    job = store.submit_processing_job(workspace_id, DUMMY, page_inputs(mets_path))
    service = EngineService(store)
    (lease,) = store.claim("w", limit=1)
    output = FileRef("OUT", "OUT_0001", "application/vnd.prima.page+xml", "OUT/1.xml", "PHYS_0001")
    store.complete([TaskResult(lease.task_id, lease.token, [output])])
    assert service.job_state(job.id) is State.SUCCESS


def test_start_takes_back_the_leases_of_a_dead_server(tmp_path: Path, store: Store) -> None:
    mets_path = workspace(tmp_path, "a", 2)
    workspace_id = store.add_workspace(mets_path)
    job = store.submit_processing_job(workspace_id, DUMMY, page_inputs(mets_path))
    held = store.claim("dead-server/0", limit=2, lease_seconds=3600)
    assert len(held) == 2
    service = EngineService(store, CoordinatorOptions(workers=1))
    done = threading.Event()
    service.start()
    try:
        service.on_finished(job.id, lambda _job, _state: done.set())
        assert done.wait(60)
    finally:
        service.stop()
    assert store.job(job.id).state == State.SUCCESS
    assert store.expire_leases(now=math.inf) == 0
    assert len(Mets.read(mets_path).find_files(file_grp="OUT")) == 2


def test_a_mets_replaced_on_disk_is_read_again_not_overwritten(
    tmp_path: Path, store: Store
) -> None:
    mets_path = workspace(tmp_path, "a", 2)
    workspace_id = store.add_workspace(mets_path)
    service = EngineService(store, CoordinatorOptions(workers=1))
    done = threading.Event()
    service.start()
    try:
        service.add_workspace(workspace_id)
        first = store.submit_processing_job(workspace_id, DUMMY, page_inputs(mets_path))
        service.on_finished(first.id, lambda _job, _state: done.set())
        assert done.wait(60)
        replaced = Mets.read(mets_path)  # someone else's new METS (an upload replacing it)
        replaced.add_file("EXTRA", "EXTRA_1", "extra.txt", "text/plain", "PHYS_0001")
        replaced.save(mets_path)
        done.clear()
        second_step = WorkflowStep("ocrd-swarm-dummy", ("OCR-D-IMG",), ("OUT2",), {})
        second = store.submit_processing_job(workspace_id, second_step, page_inputs(mets_path))
        service.on_finished(second.id, lambda _job, _state: done.set())
        assert done.wait(60)
    finally:
        service.stop()
    final = Mets.read(mets_path)
    assert [f.id for f in final.find_files(file_grp="EXTRA")] == ["EXTRA_1"]
    assert len(final.find_files(file_grp="OUT")) == 2
    assert len(final.find_files(file_grp="OUT2")) == 2


def test_workers_alive_counts_the_pool_while_running(store: Store) -> None:
    service = EngineService(store, CoordinatorOptions(workers=2))
    assert service.workers_alive() == 0
    service.start()
    try:
        wait_until(lambda: service.workers_alive() == 2)
        assert service.workers_alive() == 2
    finally:
        service.stop()
    assert service.workers_alive() == 0


def test_each_job_writes_the_agent_of_its_step_once(tmp_path: Path, store: Store) -> None:
    mets_path = workspace(tmp_path, "a", 2)
    workspace_id = store.add_workspace(mets_path)
    second = WorkflowStep("ocrd-swarm-dummy", ("OCR-D-IMG",), ("OUT2",), {})
    service = EngineService(store, CoordinatorOptions(workers=1))
    finished: list[str] = []
    service.start()
    try:
        for step in (DUMMY, second):
            job = store.submit_processing_job(workspace_id, step, page_inputs(mets_path))
            service.add_workspace(workspace_id)
            service.on_finished(job.id, lambda job_id, _state: finished.append(job_id))
            wait_until(lambda job_id=job.id: job_id in finished)
    finally:
        service.stop()
    outputs = [
        dict(agent.notes)["output-file-grp"]
        for agent in Mets.read(mets_path).agents
        if agent.name.startswith("ocrd-swarm-dummy ")
    ]
    assert outputs == ["OUT", "OUT2"]
