"""Rendered pages with known text for the Tesseract processors' tests, and how to run them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import BBox, PcGts, page_to_bytes, parse_page, validate_page
from ocrswarm.processors.evaluate import edit_distance
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.processors.processor import InputFile, PageJob
from ocrswarm.processors.recognize import RecognizeProcessor
from ocrswarm.processors.segment import SegmentProcessor
from tests.render import render_page

LINES = [
    "The quick brown fox jumps over",
    "the lazy dog. Pack my box with",
    "five dozen liquor jugs in 1879.",
]
TEXT = "\n".join(LINES)
SIZE = (1240, 600)  # width, height: small, so Tesseract is quick


def rendered_page(workspace: Path, *, dpi: int = 300, lines: list[str] = LINES) -> InputFile:
    """A page image in the workspace's OCR-D-IMG fileGrp, as an input file."""
    path = render_page(workspace / "OCR-D-IMG" / "page.png", lines, size=SIZE, dpi=dpi)
    return InputFile("OCR-D-IMG", "OCR-D-IMG_0001", "image/png", path)


def page_input(workspace: Path, pcgts: PcGts, file_grp: str = "OCR-D-SEG") -> InputFile:
    """`pcgts` written to the workspace as a PAGE input file."""
    path = workspace / file_grp / "page.xml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(page_to_bytes(pcgts))
    return InputFile(file_grp, f"{file_grp}_0001", MIMETYPE_PAGE, path)


def segment(workspace: Path, file: InputFile, out: str = "OCR-D-SEG", **parameters: Any) -> PcGts:
    tool = tool_json("ocrd-swarm-segment")
    with SegmentProcessor(validate_parameters(tool, parameters)) as processor:
        return _run(processor.process_page, workspace, file, out)


def recognize(workspace: Path, file: InputFile, out: str = "OCR-D-OCR", **parameters: Any) -> PcGts:
    tool = tool_json("ocrd-swarm-recognize")
    with RecognizeProcessor(validate_parameters(tool, parameters)) as processor:
        return _run(processor.process_page, workspace, file, out)


def _run(process: Any, workspace: Path, file: InputFile, out: str) -> PcGts:
    """Run one page; the output must be a single PAGE file that validates."""
    [output] = process(PageJob(workspace, "PHYS_0001", [file], [out]))
    assert output.mimetype == MIMETYPE_PAGE
    assert output.file_id == f"{out}_PHYS_0001"
    path = workspace / output.href
    assert validate_page(path) == []
    return parse_page(path)


def similarity(found: str, expected: str) -> float:
    """The share of the expected characters read right: 1 - edit distance / length."""
    return 1 - edit_distance(found, expected) / len(expected)


def inside(inner: BBox, outer: BBox) -> bool:
    return (
        outer[0] <= inner[0] <= inner[2] <= outer[2]
        and outer[1] <= inner[1] <= inner[3] <= outer[3]
    )
