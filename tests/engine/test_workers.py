"""Local worker processes: real processes, real processors, real crashes."""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ocrswarm.engine.records import FileRef, TaskLease
from ocrswarm.engine.workers import (
    TaskDone,
    TaskFailed,
    WorkerEvent,
    WorkerLost,
    WorkerPool,
    WorkerSlot,
)
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import parse_page
from tests.engine.fake_processors import EXTRA_PROCESSORS
from tests.render import render_page


@pytest.fixture(autouse=True)
def _extra_processors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRSWARM_EXTRA_PROCESSORS", EXTRA_PROCESSORS)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    for n in (1, 2, 3, 4):
        render_page(tmp_path / "IMG" / f"p{n}.png", [f"page {n}"], size=(300, 200))
    return tmp_path


@pytest.fixture
def pool() -> Iterator[WorkerPool]:
    workers = WorkerPool(1)
    workers.start()
    yield workers
    workers.close()


def lease(
    workspace: Path,
    page: int,
    executable: str = "ocrd-test-sleep",
    parameters: Mapping[str, Any] | None = None,
    *,
    output: str = "OUT",
) -> TaskLease:
    image = FileRef("IMG", f"IMG_{page}", "image/png", f"IMG/p{page}.png", f"PHYS_{page}")
    return TaskLease(
        task_id=page,
        token=uuid.uuid4().hex,
        job_id="job",
        workflow_job_id="workflow",
        executable=executable,
        parameters=dict(parameters or {}),
        page_id=f"PHYS_{page}",
        inputs=[image],
        input_file_grps=("IMG",),
        output_file_grps=(output,),
        workspace_id="ws",
        workspace_dir=workspace,
        attempt=1,
        max_attempts=3,
        lease_until=time.time() + 60,
    )


def collect(pool: WorkerPool, count: int, timeout: float = 60) -> list[WorkerEvent]:
    """Wait until `count` events arrived (a WorkerLost counts as one)."""
    events: list[WorkerEvent] = []
    deadline = time.monotonic() + timeout
    while len(events) < count:
        assert time.monotonic() < deadline, f"only {events} after {timeout} s"
        events.extend(pool.wait(1.0))
    return events


def record(workspace: Path, page: int, grp: str = "OUT") -> dict[str, str]:
    """What the fake processor wrote for a page: page, pid, instance, omp."""
    words = (workspace / grp / f"{grp}_PHYS_{page}.txt").read_text().split()
    return {"page": words[0], **dict(word.split("=", 1) for word in words[1:])}


def wait_for(path: Path, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.01)
    return path.read_text()


def test_a_worker_processes_its_batch_in_order_with_one_resident_processor(
    workspace: Path, pool: WorkerPool
) -> None:
    tasks = [lease(workspace, page) for page in (1, 2, 3)]
    pool.send(pool.slots[0], tasks)
    events = collect(pool, 3)
    assert [type(e) for e in events] == [TaskDone] * 3
    assert [e.task.page_id for e in events if isinstance(e, TaskDone)] == [
        "PHYS_1",
        "PHYS_2",
        "PHYS_3",
    ]
    records = [record(workspace, page) for page in (1, 2, 3)]
    assert {r["pid"] for r in records} == {str(pool.slots[0].pid)}
    assert len({r["instance"] for r in records}) == 1  # constructed once, used three times
    assert not pool.slots[0].in_flight


def test_outputs_come_back_as_the_processor_returned_them(
    workspace: Path, pool: WorkerPool
) -> None:
    pool.send(pool.slots[0], [lease(workspace, 1, "ocrd-swarm-dummy", output="OCR-D-DUMMY")])
    [done] = collect(pool, 1)
    assert isinstance(done, TaskDone)
    [output] = done.outputs
    assert (output.file_grp, output.page_id, output.mimetype) == (
        "OCR-D-DUMMY",
        "PHYS_1",
        MIMETYPE_PAGE,
    )
    assert parse_page(workspace / output.href).page.image_filename == "IMG/p1.png"


def test_workers_run_with_one_openmp_thread_whatever_the_parent_has(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMP_THREAD_LIMIT", "4")
    workers = WorkerPool(1)
    workers.start()
    try:
        workers.send(workers.slots[0], [lease(workspace, 1)])
        collect(workers, 1)
    finally:
        workers.close()
    assert record(workspace, 1)["omp"] == "1"


def test_different_parameters_get_their_own_instance(workspace: Path, pool: WorkerPool) -> None:
    pool.send(pool.slots[0], [lease(workspace, 1, parameters={"seconds": 0})])
    pool.send(pool.slots[0], [lease(workspace, 2, parameters={"seconds": 0.001})])
    collect(pool, 2)
    assert record(workspace, 1)["instance"] != record(workspace, 2)["instance"]


def test_a_failing_page_is_an_answer_with_its_traceback_not_a_dead_worker(
    workspace: Path, pool: WorkerPool
) -> None:
    pid = pool.slots[0].pid
    tasks = [lease(workspace, 1, "ocrd-test-fail", {"pages": ["PHYS_1"]}), lease(workspace, 2)]
    pool.send(pool.slots[0], tasks)
    failed, done = collect(pool, 2)
    assert isinstance(failed, TaskFailed)
    assert failed.error == "RuntimeError: this processor always fails on PHYS_1"
    assert failed.traceback is not None and "fake_processors.py" in failed.traceback
    assert failed.retry
    assert isinstance(done, TaskDone)
    assert pool.slots[0].pid == pid


def test_bad_input_data_is_not_worth_a_retry(workspace: Path, pool: WorkerPool) -> None:
    (workspace / "IMG" / "p1.png").write_bytes(b"not a PNG at all")
    pool.send(pool.slots[0], [lease(workspace, 1, "ocrd-swarm-dummy", output="D")])
    [failed] = collect(pool, 1)
    assert isinstance(failed, TaskFailed)
    assert "p1.png" in failed.error
    assert not failed.retry


def test_a_processor_that_cannot_start_fails_every_page_without_retry(
    workspace: Path, pool: WorkerPool
) -> None:
    broken = {"format": "no-such-format"}
    pool.send(pool.slots[0], [lease(workspace, p, "ocrd-swarm-export", broken) for p in (1, 2)])
    events = collect(pool, 2)
    for event in events:
        assert isinstance(event, TaskFailed)
        assert event.error.startswith("cannot start ocrd-swarm-export: unknown export format")
        assert not event.retry


def test_an_input_href_leaving_the_workspace_fails_the_page(
    workspace: Path, pool: WorkerPool
) -> None:
    task = lease(workspace, 1)
    outside = FileRef("IMG", "IMG_X", "image/png", "../../etc/passwd", "PHYS_1")
    pool.send(pool.slots[0], [_with_inputs(task, [outside])])
    [failed] = collect(pool, 1)
    assert isinstance(failed, TaskFailed)
    assert "leads outside the workspace" in failed.error


def _with_inputs(task: TaskLease, inputs: Sequence[FileRef]) -> TaskLease:
    data = task.to_dict()
    data["inputs"] = [ref.to_dict() for ref in inputs]
    return TaskLease.from_dict(data)


def until_lost(pool: WorkerPool, timeout: float = 60) -> tuple[list[WorkerEvent], WorkerLost]:
    """The events up to and including the first WorkerLost."""
    events: list[WorkerEvent] = []
    deadline = time.monotonic() + timeout
    while not any(isinstance(event, WorkerLost) for event in events):
        assert time.monotonic() < deadline, f"no worker lost after {timeout} s: {events}"
        events.extend(pool.wait(1.0))
    *before, lost = events
    assert isinstance(lost, WorkerLost)
    return before, lost


@pytest.mark.parametrize("signum", [signal.SIGSEGV, signal.SIGKILL])
def test_a_crashing_page_costs_only_that_page_and_the_worker_is_replaced(
    workspace: Path, pool: WorkerPool, signum: int
) -> None:
    slot = pool.slots[0]
    old_pid = slot.pid
    crash = {"pages": ["PHYS_2"], "signal": int(signum)}
    tasks = [lease(workspace, page, "ocrd-test-crash", crash) for page in (1, 2, 3, 4)]
    pool.send(slot, tasks)
    done, lost = until_lost(pool)
    name = signal.Signals(signum).name
    assert lost.message == f"worker died with signal {signum} ({name}) while processing PHYS_2"
    assert lost.current is tasks[1]
    # PHYS_1 was done; its answer may have died with the worker (then it is done again).
    answered = [event.task.page_id for event in done if isinstance(event, TaskDone)]
    assert answered in ([], ["PHYS_1"])
    given_back = [task.page_id for task in lost.unstarted]
    assert sorted(answered + given_back) == ["PHYS_1", "PHYS_3", "PHYS_4"]
    replacement = pool.slots[0]
    assert replacement.pid != old_pid and not replacement.in_flight
    pool.send(replacement, [lease(workspace, 3)])
    [again] = collect(pool, 1)
    assert isinstance(again, TaskDone)
    assert record(workspace, 3)["pid"] == str(replacement.pid)


def test_kill_9_from_outside_in_the_middle_of_a_page(workspace: Path, pool: WorkerPool) -> None:
    slow = lease(workspace, 1, parameters={"seconds": 30})
    pool.send(pool.slots[0], [slow, lease(workspace, 2)])
    pid = int(wait_for(workspace / "started" / "PHYS_1.1"))
    os.kill(pid, signal.SIGKILL)
    _, lost = until_lost(pool)
    assert lost.message == "worker died with signal 9 (SIGKILL) while processing PHYS_1"
    assert [task.page_id for task in lost.unstarted] == ["PHYS_2"]


def test_a_page_that_runs_too_long_is_killed_with_a_reason(
    workspace: Path, pool: WorkerPool
) -> None:
    pool.send(pool.slots[0], [lease(workspace, 1), lease(workspace, 2, parameters={"seconds": 30})])
    pool.kill_overdue(0.2)
    wait_for(workspace / "started" / "PHYS_2.1")
    pool.kill_overdue(0.2)  # the clock starts when the worker starts the page
    time.sleep(0.3)
    pool.kill_overdue(0.2)
    before, lost = until_lost(pool)
    assert lost.message == "page took longer than 0.2 s; worker killed while processing PHYS_2"
    # PHYS_1 was answered before the slow page began, not held back behind it.
    assert [event.task.page_id for event in before] == ["PHYS_1"]


def test_stop_lets_the_current_page_finish_and_hands_back_the_rest(
    workspace: Path, pool: WorkerPool
) -> None:
    pool.send(
        pool.slots[0], [lease(workspace, 1, parameters={"seconds": 0.5}), lease(workspace, 2)]
    )
    wait_for(workspace / "started" / "PHYS_1.1")
    events = pool.stop(grace=30)
    done, lost = events
    assert isinstance(done, TaskDone) and done.task.page_id == "PHYS_1"
    assert isinstance(lost, WorkerLost)
    assert lost.current is None  # nobody's fault
    assert [task.page_id for task in lost.unstarted] == ["PHYS_2"]
    assert not pool.slots


def test_stop_kills_a_page_that_outlasts_the_grace_period(
    workspace: Path, pool: WorkerPool
) -> None:
    pool.send(pool.slots[0], [lease(workspace, 1, parameters={"seconds": 30})])
    wait_for(workspace / "started" / "PHYS_1.1")
    [lost] = pool.stop(grace=0.2)
    assert isinstance(lost, WorkerLost)
    assert lost.current is None
    assert [task.page_id for task in lost.unstarted] == ["PHYS_1"]


def test_a_worker_whose_coordinator_vanished_ends_itself(workspace: Path) -> None:
    workers = WorkerPool(1)
    workers.start()
    slot: WorkerSlot = workers.slots[0]
    workers.send(slot, [lease(workspace, 1, parameters={"seconds": 30})])
    wait_for(workspace / "started" / "PHYS_1.1")
    slot.inbox.close()  # what the coordinator's death does to the pipe
    slot.process.join(10)
    assert slot.process.exitcode == 3
    workers.close()


def test_a_worker_dying_between_pages_blames_no_page(workspace: Path, pool: WorkerPool) -> None:
    pool.send(pool.slots[0], [lease(workspace, 1)])
    [done] = collect(pool, 1)
    assert isinstance(done, TaskDone)
    os.kill(pool.slots[0].pid or 0, signal.SIGKILL)
    _, lost = until_lost(pool)
    assert (lost.current, lost.unstarted) == (None, ())
