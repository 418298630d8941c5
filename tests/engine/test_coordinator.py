"""The coordinator without `ocrswarm run` around it: serving a store until stopped."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

from ocrswarm.engine.coordinator import Coordinator, CoordinatorOptions
from ocrswarm.engine.metswriter import MetsWriter
from ocrswarm.engine.records import FileRef, PageInputs, Progress
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workflow import parse_tasks
from ocrswarm.formats.mets import Mets
from ocrswarm.formats.workspace import Workspace


def pages_of(workspace: Workspace) -> list[PageInputs]:
    return [
        PageInputs(
            page,
            [
                FileRef(f.file_grp, f.id, f.mimetype, f.href, page)
                for f in workspace.mets.find_files(file_grp="OCR-D-IMG", page_id=page)
            ],
        )
        for page in workspace.mets.page_ids
    ]


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_without_a_job_it_serves_until_stopped(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    workspace = Workspace.from_images(image_dir(3), tmp_path / "ws")
    with Store(sqlite_url(tmp_path / "state.sqlite")) as store:
        store.migrate()
        workspace_id = store.add_workspace(workspace.mets_path)
        writer = MetsWriter(workspace.mets_path, store, workspace_id, min_interval=0)
        coordinator = Coordinator(store, None, writer, CoordinatorOptions(workers=1))
        returned: list[Progress | None] = []
        thread = threading.Thread(target=lambda: returned.append(coordinator.run()))
        thread.start()
        try:
            jobs = [
                store.submit_workflow(
                    workspace_id, parse_tasks([f"swarm-dummy -I OCR-D-IMG -O {grp}"]), pages
                ).id
                for grp, pages in (("FIRST", pages_of(workspace)), ("LATER", pages_of(workspace)))
            ]
            wait_for(lambda: all(store.progress(job).state == State.SUCCESS for job in jobs))
        finally:
            coordinator.stop()
            thread.join(60)
        assert not thread.is_alive() and returned == [None]
        mets = Mets.read(workspace.mets_path)
        assert len(mets.find_files(file_grp="FIRST")) == 3
        assert len(mets.find_files(file_grp="LATER")) == 3
        assert store.pending_registrations(workspace_id, 10) == []
