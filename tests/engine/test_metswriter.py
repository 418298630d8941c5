"""The single METS writer, against an outbox that checks the order of save and mark."""

from __future__ import annotations

import gc
import random
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocrswarm.engine.metswriter import MetsWriter, StepAgent
from ocrswarm.engine.records import FileRef, Registration
from ocrswarm.formats.mets import MIMETYPE_PAGE, Mets
from ocrswarm.formats.workspace import Workspace


@dataclass
class Outbox:
    """The store's outbox in memory; `on_mark` sees the METS on disk when files are marked."""

    pending: list[Registration]
    on_mark: Callable[[Sequence[int]], None] | None = None

    def pending_registrations(self, workspace_id: str, limit: int) -> list[Registration]:
        assert workspace_id == "ws"
        return self.pending[:limit]

    def mark_registered(self, registration_ids: Sequence[int]) -> None:
        if self.on_mark:
            self.on_mark(registration_ids)
        done = set(registration_ids)
        self.pending = [r for r in self.pending if r.id not in done]


def registration(number: int, page: str, grp: str = "OCR-D-OCR") -> Registration:
    file = FileRef(grp, f"{grp}_{page}", MIMETYPE_PAGE, f"{grp}/{grp}_{page}.xml", page)
    return Registration(number, file, number, "job", "ocrd-swarm-recognize", {})


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    ws = Workspace.create(tmp_path / "ws", identifier="urn:test:writer")
    for n in (1, 2, 3):
        ws.mets.add_file("OCR-D-IMG", f"IMG_{n}", f"OCR-D-IMG/{n}.png", "image/png", f"PHYS_{n}")
    ws.save()
    return ws


def on_disk(workspace: Workspace) -> Mets:
    return Mets.read(workspace.mets_path)


def agent(grp: str = "OCR-D-OCR") -> StepAgent:
    return StepAgent.for_step(
        "ocrd-swarm-recognize",
        "0.1.0",
        "recognition/text-recognition",
        ["OCR-D-IMG"],
        [grp],
        {"model": "eng"},
        None,
    )


def test_files_are_saved_before_they_are_marked_registered(workspace: Workspace) -> None:
    seen_at_mark: list[list[str]] = []

    def check(ids: Sequence[int]) -> None:
        mets = on_disk(workspace)
        assert mets.validate_schema() == []
        seen_at_mark.append([f.id for f in mets.find_files(file_grp="OCR-D-OCR")])

    outbox = Outbox([registration(1, "PHYS_1"), registration(2, "PHYS_2")], check)
    writer = MetsWriter(workspace.mets_path, outbox, "ws")
    assert writer.flush() == 2
    assert seen_at_mark == [["OCR-D-OCR_PHYS_1", "OCR-D-OCR_PHYS_2"]]
    assert outbox.pending == []
    file = on_disk(workspace).get_file("OCR-D-OCR_PHYS_2")
    assert (file.page_id, file.href, file.mimetype) == (
        "PHYS_2",
        "OCR-D-OCR/OCR-D-OCR_PHYS_2.xml",
        MIMETYPE_PAGE,
    )


def test_registering_again_after_a_crash_never_duplicates(workspace: Workspace) -> None:
    def crash(ids: Sequence[int]) -> None:
        raise RuntimeError("power cut between save and mark")

    outbox = Outbox([registration(1, "PHYS_1"), registration(2, "PHYS_2")], crash)
    with pytest.raises(RuntimeError):
        MetsWriter(workspace.mets_path, outbox, "ws").flush()
    assert len(outbox.pending) == 2  # not marked: they come again
    outbox.on_mark = None
    assert MetsWriter(workspace.mets_path, outbox, "ws").flush(force=True) == 2
    mets = on_disk(workspace)
    assert [f.id for f in mets.find_files(file_grp="OCR-D-OCR")] == [
        "OCR-D-OCR_PHYS_1",
        "OCR-D-OCR_PHYS_2",
    ]
    assert mets.find_files(page_id="PHYS_1", file_grp="OCR-D-OCR")[0].id == "OCR-D-OCR_PHYS_1"
    assert mets.validate_schema() == []


def test_saves_are_spaced_but_force_always_saves(workspace: Workspace) -> None:
    outbox = Outbox([registration(1, "PHYS_1")])
    writer = MetsWriter(workspace.mets_path, outbox, "ws", min_interval=3600)
    assert writer.flush() == 1
    outbox.pending.append(registration(2, "PHYS_2"))
    assert writer.flush() == 0  # the next save is not due for an hour
    assert not on_disk(workspace).find_files(page_id="PHYS_2", file_grp="OCR-D-OCR")
    assert writer.flush(force=True) == 1
    assert on_disk(workspace).find_files(page_id="PHYS_2", file_grp="OCR-D-OCR")


def test_force_empties_the_outbox_in_batches(workspace: Workspace) -> None:
    outbox = Outbox([registration(n, f"PHYS_{n}") for n in (1, 2, 3)])
    writer = MetsWriter(workspace.mets_path, outbox, "ws", batch_size=2)
    assert writer.flush(force=True) == 3
    assert outbox.pending == []
    assert writer.registered == 3


def test_one_agent_per_step_added_with_its_first_file_and_never_twice(
    workspace: Workspace,
) -> None:
    steps = [agent("OCR-D-OCR"), agent("OCR-D-OTHER")]
    outbox = Outbox([registration(1, "PHYS_1"), registration(2, "PHYS_2")])
    MetsWriter(workspace.mets_path, outbox, "ws", agents=steps).flush()
    agents = on_disk(workspace).agents
    recognize = [a for a in agents if a.name == "ocrd-swarm-recognize v0.1.0"]
    assert len(recognize) == 1  # the step writing OCR-D-OTHER has produced nothing yet
    assert recognize[0].otherrole == "recognition/text-recognition"
    assert ("output-file-grp", "OCR-D-OCR") in recognize[0].notes
    # The same run resumed: same agents, nothing added twice.
    outbox.pending.append(registration(3, "PHYS_3"))
    MetsWriter(workspace.mets_path, outbox, "ws", agents=steps).flush()
    assert len([a for a in on_disk(workspace).agents if a.name.startswith("ocrd-swarm")]) == 1


def test_a_file_that_cannot_be_registered_is_reported_not_fatal(workspace: Workspace) -> None:
    broken = FileRef("OCR-D-OCR", "bad id", MIMETYPE_PAGE, "OCR-D-OCR/x.xml", "PHYS_1")
    outbox = Outbox([Registration(1, broken, 1, "job", "x", {}), registration(2, "PHYS_2")])
    writer = MetsWriter(workspace.mets_path, outbox, "ws")
    assert writer.flush() == 2
    assert len(writer.problems) == 1 and "bad id" in writer.problems[0]
    assert on_disk(workspace).find_files(page_id="PHYS_2", file_grp="OCR-D-OCR")
    assert outbox.pending == []


def book(directory: Path, pages: int) -> Path:
    """A workspace of `pages` pages with an image each, its METS written once."""
    mets = Mets.empty("urn:test:book")
    for n in range(1, pages + 1):
        mets.add_file("OCR-D-IMG", f"IMG_{n}", f"OCR-D-IMG/{n}.png", "image/png", f"PHYS_{n}")
    path = directory / "mets.xml"
    directory.mkdir()
    mets.save(path)
    return path


def test_files_are_listed_in_page_order_however_the_pages_finish(tmp_path: Path) -> None:
    mets_path = book(tmp_path / "ws", 30)
    finished = list(range(1, 31))
    random.Random(4).shuffle(finished)
    outbox = Outbox([registration(n, f"PHYS_{n}") for n in finished])
    writer = MetsWriter(mets_path, outbox, "ws", batch_size=4)
    assert writer.flush(force=True) == 30  # a save per batch of four
    mets = Mets.read(mets_path)
    assert [f.page_id for f in mets.find_files(file_grp="OCR-D-OCR")] == mets.page_ids
    assert mets.validate_schema() == []


def peak_memory_of_registering(directory: Path, pages: int) -> int:
    """tracemalloc's peak while the writer registers one file per page, in batches of 50."""
    mets_path = book(directory, pages)
    outbox = Outbox([registration(n, f"PHYS_{n}") for n in range(1, pages + 1)])
    writer = MetsWriter(mets_path, outbox, "ws", batch_size=50, min_interval=0)
    gc.collect()
    tracemalloc.start()
    try:
        assert writer.flush(force=True) == pages
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_the_writers_memory_does_not_grow_with_the_pages(tmp_path: Path) -> None:
    small = peak_memory_of_registering(tmp_path / "small", 200)
    large = peak_memory_of_registering(tmp_path / "large", 2000)
    # What may grow: the index of the pages (ID -> position, files per page), about 100
    # bytes a page. A METS held in memory costs its Python indexes alone over 1 KiB a file.
    assert large - small < 1800 * 256, (small, large)
