"""ocrd-swarm-dummy: PAGE pass-through, PAGE for images, copies, valid PAGE and METS."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrswarm.formats.images import inspect_image
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import (
    Coords,
    PcGts,
    TextLine,
    TextRegion,
    page_to_bytes,
    parse_page,
    validate_page,
)
from ocrswarm.formats.workspace import Workspace
from ocrswarm.processors.cli import run_processor_cli
from ocrswarm.processors.dummy import DummyProcessor
from ocrswarm.processors.ocrd_tool import load_ocrd_tool
from ocrswarm.processors.processor import InputFile, PageJob
from tests.render import render_page


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    scans = tmp_path / "scans"
    for n in (1, 2):
        render_page(scans / f"scan_{n}.png", [f"Page {n} of the sample"], size=(620, 877))
    return Workspace.from_images(scans, tmp_path / "ws")


def dummy(workspace: Workspace, *args: str) -> int:
    return run_processor_cli("ocrd-swarm-dummy", ["-m", str(workspace.mets_path), *args])


def processing_steps(page_path: Path) -> list[str]:
    """The (name, value) of each processingStep MetadataItem, as 'name=value'."""
    items = [e for e in parse_page(page_path).metadata_extras if e.name == "MetadataItem"]
    return [f"{item.element().get('name')}={item.element().get('value')}" for item in items]


def test_images_get_a_valid_page_each(workspace: Workspace) -> None:
    assert dummy(workspace, "-I", "OCR-D-IMG", "-O", "OCR-D-DUMMY") == 0
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    for page_id in ("PHYS_0001", "PHYS_0002"):
        (image,) = reread.mets.find_files(file_grp="OCR-D-IMG", page_id=page_id)
        (page_file,) = reread.mets.find_files(file_grp="OCR-D-DUMMY", page_id=page_id)
        assert page_file.id == f"OCR-D-DUMMY_{page_id}"
        assert page_file.mimetype == MIMETYPE_PAGE
        path = reread.resolve(page_file)
        assert validate_page(path) == []
        pcgts = parse_page(path)
        info = inspect_image(reread.resolve(image))
        assert pcgts.pcgts_id == page_file.id
        assert pcgts.page.image_filename == image.href
        assert (pcgts.page.image_width, pcgts.page.image_height) == (info.width, info.height)
        assert processing_steps(path) == ["preprocessing/optimization=ocrd-swarm-dummy"]
    agent = reread.mets.agents[-1]
    assert agent.name == f"ocrd-swarm-dummy v{load_ocrd_tool()['version']}"
    assert agent.otherrole == "preprocessing/optimization"
    assert dict(agent.notes)["parameter"] == '{"copy_files": false}'


def test_copy_files_copies_the_image_and_points_the_page_at_the_copy(
    workspace: Workspace,
) -> None:
    assert dummy(workspace, "-I", "OCR-D-IMG", "-O", "COPY", "-P", "copy_files", "true") == 0
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    files = {file.id: file for file in reread.mets.find_files(file_grp="COPY", page_id="PHYS_0001")}
    assert set(files) == {"COPY_PHYS_0001", "COPY_PHYS_0001_PAGE"}
    copy, page_file = files["COPY_PHYS_0001"], files["COPY_PHYS_0001_PAGE"]
    (original,) = reread.mets.find_files(file_grp="OCR-D-IMG", page_id="PHYS_0001")
    assert copy.mimetype == "image/png"
    assert copy.href == "COPY/COPY_PHYS_0001.png"
    assert reread.resolve(copy).read_bytes() == reread.resolve(original).read_bytes()
    assert not reread.resolve(copy).samefile(reread.resolve(original))
    assert parse_page(reread.resolve(page_file)).page.image_filename == copy.href


def test_page_input_passes_through_with_new_metadata(workspace: Workspace) -> None:
    source = PcGts.new("OCR-D-IMG/scan_1.png", 620, 877, creator="someone else")
    source.pcgts_id = "SEG_PHYS_0001"
    region = TextRegion("r1", Coords.from_bbox((10, 10, 300, 80)))
    region.lines.append(TextLine("r1_l1", Coords.from_bbox((10, 10, 300, 60))))
    region.lines[0].set_text("Page 1 of the sample", 0.9)
    region.set_text("Page 1 of the sample", 0.9)
    source.page.regions.append(region)
    workspace.add_file(
        page_to_bytes(source),
        file_grp="SEG",
        file_id="SEG_PHYS_0001",
        mimetype=MIMETYPE_PAGE,
        page_id="PHYS_0001",
    )
    workspace.save()
    assert dummy(workspace, "-I", "SEG", "-O", "PASS", "-P", "copy_files", "true") == 0
    reread = Workspace.open(workspace.mets_path)
    (output,) = reread.mets.find_files(file_grp="PASS")  # a PAGE input: no image copied
    assert output.id == "PASS_PHYS_0001"
    result = parse_page(reread.resolve(output))
    assert validate_page(reread.resolve(output)) == []
    assert result.page == parse_page(page_to_bytes(source)).page
    assert result.creator == "someone else"
    assert result.pcgts_id == "PASS_PHYS_0001"
    assert processing_steps(reread.resolve(output)) == [
        "preprocessing/optimization=ocrd-swarm-dummy"
    ]
    assert reread.validate() == []


def test_the_processor_works_on_a_page_job_alone(tmp_path: Path) -> None:
    """The engine's way: no METS, a workspace reached through a symlink."""
    real = tmp_path / "real"
    render_page(real / "IMG" / "p.png", ["x"], size=(200, 100))
    link = tmp_path / "link"
    link.symlink_to(real)
    image = InputFile("IMG", "IMG_1", "image/png", (link / "IMG" / "p.png").resolve())
    job = PageJob(link, "P1", [image], ["OUT"])
    with DummyProcessor({"copy_files": False}) as processor:
        (output,) = processor.process_page(job)
    assert (output.file_grp, output.file_id, output.page_id) == ("OUT", "OUT_P1", "P1")
    assert output.href == "OUT/OUT_P1.xml"
    pcgts = parse_page(link / output.href)
    assert pcgts.page.image_filename == "IMG/p.png"
    assert (pcgts.page.image_width, pcgts.page.image_height) == (200, 100)
