"""Preparing OUT from a folder of images, a METS, an unzipped bag or an OCRD-ZIP."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ocrswarm.engine.prepare import InputKind, RunInput, prepare_workspace
from ocrswarm.errors import FormatError, UsageError
from ocrswarm.formats.ocrdzip import pack_workspace
from ocrswarm.formats.workspace import Workspace


def test_a_folder_of_images_becomes_a_new_workspace(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    scans = image_dir(3)
    out = tmp_path / "out"
    prepared = prepare_workspace(RunInput.of(scans), out)
    assert prepared.created
    ws = Workspace.open(prepared.mets_path)
    assert ws.mets_path == out / "mets.xml"
    assert ws.mets.page_ids == ["PHYS_0001", "PHYS_0002", "PHYS_0003"]
    image = ws.resolve(ws.mets.find_files(file_grp="OCR-D-IMG", page_id="PHYS_0002")[0])
    assert image.is_relative_to(out.resolve())
    assert os.path.samefile(image, scans / "page_2.png")  # hard-linked, not copied
    assert ws.validate() == []
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_the_same_input_again_finds_the_workspace_it_made(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    scans = image_dir(2)
    first = prepare_workspace(RunInput.of(scans), tmp_path / "out")
    made = Workspace.open(first.mets_path)
    made.mets.add_file("X", "X_1", "X/1.txt", "text/plain", "PHYS_0001")
    made.save()
    again = prepare_workspace(RunInput.of(scans), tmp_path / "out")
    assert not again.created
    assert Workspace.open(again.mets_path).mets.find_files(
        file_grp="X"
    )  # the same workspace, not rebuilt


def test_another_input_into_an_existing_workspace_is_refused(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    prepare_workspace(RunInput.of(image_dir(2)), tmp_path / "out")
    other = tmp_path / "other-scans"
    other.mkdir()
    (tmp_path / "scans" / "page_1.png").rename(other / "a.png")
    with pytest.raises(UsageError, match="not made from"):
        prepare_workspace(RunInput.of(other), tmp_path / "out")


def test_a_non_empty_folder_without_a_workspace_is_refused(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        prepare_workspace(RunInput.of(image_dir(1)), out)
    assert (out / "notes.txt").read_text() == "mine"


def test_a_failed_preparation_leaves_nothing_behind(tmp_path: Path) -> None:
    scans = tmp_path / "scans"
    scans.mkdir()
    (scans / "readme.txt").write_text("no images here")
    with pytest.raises(FormatError, match="no images"):
        prepare_workspace(RunInput.of(scans), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scans"]


def test_a_mets_in_out_is_worked_on_in_place(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    ws = Workspace.from_images(image_dir(2), tmp_path / "ws")
    source = RunInput.of(ws.mets_path)
    assert source.kind == InputKind.METS
    assert source.default_output() == ws.directory
    prepared = prepare_workspace(source, ws.directory)
    assert not prepared.created
    assert prepared.mets_path == ws.mets_path
    assert not (ws.directory / ".ocrswarm" / "source.json").exists()


def test_a_mets_elsewhere_is_copied_with_its_files(shared_data: Path, tmp_path: Path) -> None:
    source = RunInput.of(shared_data / "bebel_frau_1879")  # a folder holding mets.xml
    assert source.kind == InputKind.METS
    prepared = prepare_workspace(source, tmp_path / "out")
    ws = Workspace.open(prepared.mets_path)
    original = Workspace.open(shared_data / "bebel_frau_1879" / "mets.xml")
    assert [f.id for f in ws.mets.files] == [f.id for f in original.mets.files]
    for file in ws.mets.find_files(file_grp="OCR-D-IMG"):
        assert ws.resolve(file).is_relative_to((tmp_path / "out").resolve())
        assert ws.resolve(file).read_bytes() == original.resolve(file).read_bytes()
    remote = ws.mets.find_files(file_grp="DEFAULT")
    assert remote and all(f.is_url for f in remote)  # references kept, never fetched
    assert ws.validate(check_files=False) == []


def test_an_unzipped_bag_is_read_from_its_payload(shared_data: Path, tmp_path: Path) -> None:
    source = RunInput.of(shared_data / "kant_aufklaerung_1784")
    assert source == RunInput(InputKind.METS, shared_data / "kant_aufklaerung_1784/data/mets.xml")
    ws = Workspace.open(prepare_workspace(source, tmp_path / "out").mets_path)
    assert ws.mets.find_files(file_grp="OCR-D-IMG")
    assert ws.validate() == []


def test_an_ocrd_zip_is_unpacked_into_out(shared_data: Path, tmp_path: Path) -> None:
    bag = shared_data / "ocrd-zip" / "example_ws2.ocrd.zip"
    source = RunInput.of(bag)
    assert source.kind == InputKind.OCRD_ZIP
    prepared = prepare_workspace(source, tmp_path / "out")
    assert prepared.created
    ws = Workspace.open(prepared.mets_path)
    [image] = ws.mets.find_files(file_grp="OCR-D-IMG")
    assert ws.resolve(image).is_file()
    assert not prepare_workspace(RunInput.of(bag), tmp_path / "out").created


def test_a_zip_whose_mets_has_another_name_still_gives_out_mets_xml(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    ws = Workspace.from_images(image_dir(1), tmp_path / "ws")
    bag = tmp_path / "ws.ocrd.zip"
    pack_workspace(ws.mets_path, bag, mets_basename="document.xml")
    prepared = prepare_workspace(RunInput.of(bag), tmp_path / "out")
    assert prepared.mets_path == tmp_path / "out" / "mets.xml"
    assert Workspace.open(prepared.mets_path).validate() == []


def test_missing_input_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        RunInput.of(tmp_path / "nothing")
