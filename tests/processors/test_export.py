"""ocrd-swarm-export: ALTO, hOCR and plain text from PAGE, one file per page."""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import Coords, PcGts, TextLine, TextRegion, Word, page_to_bytes
from ocrswarm.formats.workspace import Workspace
from ocrswarm.processors.cli import run_processor_cli
from tests.render import render_page

LINES = [["The", "quick", "brown", "fox"], ["jumps", "over", "the", "dog."]]
ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"


def page_with_text(image_href: str, page_number: int) -> PcGts:
    pcgts = PcGts.new(image_href, 620, 877)
    region = TextRegion(f"r{page_number}", Coords.from_bbox((10, 10, 600, 200)))
    for row, words in enumerate(LINES):
        top = 10 + row * 60
        line = TextLine(f"r{page_number}_l{row}", Coords.from_bbox((10, top, 600, top + 50)))
        for column, text in enumerate(words):
            left = 10 + column * 140
            word = Word(f"{line.id}_w{column}", Coords.from_bbox((left, top, left + 130, top + 50)))
            word.set_text(text, 0.9)
            line.words.append(word)
        region.lines.append(line)
    region.update_text()
    pcgts.page.regions.append(region)
    return pcgts


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    scans = tmp_path / "scans"
    for n in (1, 2):
        render_page(scans / f"scan_{n}.png", ["x"], size=(620, 877))
    workspace = Workspace.from_images(scans, tmp_path / "ws")
    for number, page_id in enumerate(("PHYS_0001", "PHYS_0002"), start=1):
        workspace.add_file(
            page_to_bytes(page_with_text(f"OCR-D-IMG/scan_{number}.png", number)),
            file_grp="OCR-D-OCR",
            file_id=f"OCR-D-OCR_{page_id}",
            mimetype=MIMETYPE_PAGE,
            page_id=page_id,
        )
    workspace.save()
    return workspace


def export(workspace: Workspace, *args: str) -> int:
    return run_processor_cli("ocrd-swarm-export", ["-m", str(workspace.mets_path), *args])


def exported(workspace: Workspace, file_grp: str, page_id: str) -> tuple[str, str, bytes]:
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    (file,) = reread.mets.find_files(file_grp=file_grp, page_id=page_id)
    return file.mimetype, file.href, reread.resolve(file).read_bytes()


def test_alto_is_the_default(workspace: Workspace) -> None:
    assert export(workspace, "-I", "OCR-D-OCR", "-O", "OCR-D-ALTO") == 0
    mimetype, href, content = exported(workspace, "OCR-D-ALTO", "PHYS_0002")
    assert (mimetype, href) == ("application/alto+xml", "OCR-D-ALTO/OCR-D-ALTO_PHYS_0002.xml")
    root = etree.fromstring(content)
    assert root.tag == f"{{{ALTO_NS}}}alto"
    file_name = root.find(f".//{{{ALTO_NS}}}sourceImageInformation/{{{ALTO_NS}}}fileName")
    assert file_name is not None
    assert file_name.text == "OCR-D-IMG/scan_2.png"
    lines = root.iter(f"{{{ALTO_NS}}}TextLine")
    words = [[s.get("CONTENT") for s in line.iter(f"{{{ALTO_NS}}}String")] for line in lines]
    assert words == LINES


def test_hocr(workspace: Workspace) -> None:
    assert export(workspace, "-I", "OCR-D-OCR", "-O", "HOCR", "-P", "format", "hocr") == 0
    mimetype, href, content = exported(workspace, "HOCR", "PHYS_0001")
    assert (mimetype, href) == ("text/vnd.hocr+html", "HOCR/HOCR_PHYS_0001.html")
    root = etree.fromstring(content)
    spans = root.iter("{*}span")
    words = [span.text for span in spans if span.get("class") == "ocrx_word"]
    assert words == [word for line in LINES for word in line]


def test_text(workspace: Workspace) -> None:
    assert export(workspace, "-I", "OCR-D-OCR", "-O", "TXT", "-p", '{"format": "text"}') == 0
    mimetype, href, content = exported(workspace, "TXT", "PHYS_0001")
    assert (mimetype, href) == ("text/plain", "TXT/TXT_PHYS_0001.txt")
    assert content.decode() == "The quick brown fox\njumps over the dog.\n"


def test_image_input_fails_every_page_clearly(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    assert export(workspace, "-I", "OCR-D-IMG", "-O", "TXT", "-P", "format", "text") == 1
    error = capsys.readouterr().err
    assert "2 of 2 pages failed" in error
    assert "page PHYS_0001: export needs PAGE-XML input, found only OCR-D-IMG: image/png" in error


def test_unknown_format_names_the_parameter(
    workspace: Workspace, capsys: pytest.CaptureFixture[str]
) -> None:
    before = workspace.mets_path.read_bytes()
    assert export(workspace, "-I", "OCR-D-OCR", "-O", "PDF", "-P", "format", "pdf") == 1
    assert "parameter 'format' must be one of" in capsys.readouterr().err
    assert workspace.mets_path.read_bytes() == before
