"""Replacing or deleting a workspace against job submissions on it: check and swap are one
step for submissions, which hold the workspace's lock from reading its METS to writing the job.

The routes' own functions run here in threads on a real library, store and bags; a thread
that must wait is seen waiting (`WorkspaceLocks.users`) before the other one goes on, so the
order of events is fixed and no test relies on a sleep.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import pytest
from fastapi import HTTPException

from ocrswarm.engine.records import FileRef, PageInputs
from ocrswarm.engine.states import UNFINISHED
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.formats.ocrdzip import pack_workspace
from ocrswarm.server.metscache import WorkspaceCache
from ocrswarm.server.routes.workspace import install_unless_busy
from ocrswarm.server.settings import ServerSettings
from ocrswarm.server.submission import Target, held_target
from ocrswarm.server.workspaces import StoredWorkspace, WorkspaceLibrary, WorkspaceLocks

T = TypeVar("T")
DUMMY = WorkflowStep("ocrd-swarm-dummy", ("OCR-D-IMG",), ("OUT",), {})


class PausingLibrary(WorkspaceLibrary):
    """A library whose swap stops half-way until the test lets it go on."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.swapping = threading.Event()
        self.go_on = threading.Event()

    def install(self, workspace_id: str, staged: Path) -> StoredWorkspace:
        self.swapping.set()
        assert self.go_on.wait(30)
        return super().install(workspace_id, staged)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(sqlite_url(tmp_path / "state.sqlite")) as opened:
        opened.migrate()
        yield opened


@pytest.fixture
def library(tmp_path: Path) -> PausingLibrary:
    return PausingLibrary(tmp_path / "data")


@pytest.fixture
def bag(make_workspace: Callable[..., Path], tmp_path: Path) -> Callable[[int], Path]:
    """Factory: an OCRD-ZIP of `pages` rendered pages."""

    def make(pages: int) -> Path:
        mets = make_workspace(pages=pages, name=f"ws{pages}")
        return pack_workspace(mets, tmp_path / f"ws{pages}.ocrd.zip")

    return make


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2) as pool:
        yield pool


def installed(library: PausingLibrary, store: Store, bag: Path) -> StoredWorkspace:
    library.go_on.set()
    stored = install_unless_busy(library, store, WorkspaceLocks(), "ws", library.unpack("ws", bag))
    library.go_on.clear()
    library.swapping.clear()
    return stored


def when(condition: Callable[[], bool], running: Future[T]) -> None:
    """Wait until `condition` holds (while `running` has not ended: else its error shows)."""
    deadline = time.monotonic() + 30
    while not condition():
        if running.done():
            running.result()
            raise AssertionError("the thread ended instead of waiting")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def submit_on(
    store: Store, library: WorkspaceLibrary, locks: WorkspaceLocks, tmp_path: Path
) -> Callable[[Callable[[Target], None]], str]:
    """What the run routes do: hold the workspace named by id, read it, submit one job."""

    def submit(inside: Callable[[Target], None] = lambda _target: None) -> str:
        settings = ServerSettings(data_dir=tmp_path / "data", data_roots=(tmp_path,))
        with held_target(
            store,
            settings,
            WorkspaceCache(),
            locks,
            path_to_mets=None,
            workspace_id="ws",
            uploaded=lambda workspace_id: library.get(workspace_id).mets_path,
        ) as target:
            inside(target)
            mets = target.workspace.mets
            pages = [
                PageInputs(page, [FileRef("OCR-D-IMG", f.id, f.mimetype, f.href, page)])
                for page in mets.page_ids
                for f in mets.find_files(file_grp="OCR-D-IMG", page_id=page)
            ]
            return store.submit_processing_job(target.workspace_id, DUMMY, pages).id

    return submit


def test_a_replacement_waits_for_a_submission_and_then_refuses_with_409(
    store: Store,
    library: PausingLibrary,
    bag: Callable[[int], Path],
    threads: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    old = installed(library, store, bag(2))
    locks = WorkspaceLocks()
    submit = submit_on(store, library, locks, tmp_path)
    replacing: list[Future[StoredWorkspace]] = []

    def replace_meanwhile(_target: Target) -> None:
        staged = library.unpack("ws", bag(3))
        library.go_on.set()
        replacing.append(threads.submit(install_unless_busy, library, store, locks, "ws", staged))
        when(lambda: locks.users(library.directory("ws")) == 2, replacing[0])

    job_id = submit(replace_meanwhile)
    with pytest.raises(HTTPException) as refused:
        replacing[0].result(timeout=30)
    assert refused.value.status_code == 409 and job_id in str(refused.value.detail)
    assert not library.swapping.is_set()  # the swap never began
    assert library.get("ws").mets_path.read_bytes() == old.mets_path.read_bytes()
    assert store.job(job_id).state in UNFINISHED and store.job(job_id).page_count == 2


def test_a_submission_waits_for_a_replacement_and_then_sees_the_new_workspace(
    store: Store,
    library: PausingLibrary,
    bag: Callable[[int], Path],
    threads: ThreadPoolExecutor,
    tmp_path: Path,
) -> None:
    installed(library, store, bag(2))
    locks = WorkspaceLocks()
    staged = library.unpack("ws", bag(3))
    replacing = threads.submit(install_unless_busy, library, store, locks, "ws", staged)
    when(library.swapping.is_set, replacing)  # checked: no jobs; the swap has begun
    submitting = threads.submit(submit_on(store, library, locks, tmp_path))
    when(lambda: locks.users(library.directory("ws")) == 2, submitting)
    library.go_on.set()
    new = replacing.result(timeout=30)
    job = store.job(submitting.result(timeout=30))
    assert job.page_count == 3 and job.mets_path == new.mets_path


def test_a_lock_is_forgotten_when_nobody_needs_it(tmp_path: Path) -> None:
    locks = WorkspaceLocks()
    with locks.hold(tmp_path / "a"), locks.hold(tmp_path / "b"):
        assert locks.users(tmp_path / "a") == 1
        assert locks.users(tmp_path / "x" / ".." / "a") == 1  # one lock per real directory
    assert locks.users(tmp_path / "a") == 0 and locks._locks == {}
