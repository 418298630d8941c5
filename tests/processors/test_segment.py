"""ocrd-swarm-segment: Tesseract's layout analysis as PAGE, on rendered pages and a real scan."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from ocrswarm.formats.page import (
    Coords,
    OtherRegion,
    PcGts,
    TextLine,
    TextRegion,
    parse_page,
)
from ocrswarm.processors.evaluate import most_overlapping
from ocrswarm.processors.processor import InputFile
from tests.processors.tesseract_pages import (
    LINES,
    SIZE,
    inside,
    page_input,
    rendered_page,
    segment,
)


def test_segment_an_image_into_regions_lines_and_words(tmp_path: Path) -> None:
    pcgts = segment(tmp_path, rendered_page(tmp_path))
    page = pcgts.page
    assert page.image_filename == "OCR-D-IMG/page.png"
    assert (page.image_width, page.image_height) == SIZE
    [region] = page.text_regions()
    assert isinstance(region, TextRegion)
    assert [len(line.words) for line in region.lines] == [len(line.split()) for line in LINES]
    tops = [line.coords.bbox[1] for line in region.lines]
    assert tops == sorted(tops)
    for line in region.lines:
        assert inside(line.coords.bbox, region.coords.bbox)
        assert line.baseline is not None
        assert inside(Coords(line.baseline.points).bbox, line.coords.bbox)
        lefts = [word.coords.bbox[0] for word in line.words]
        assert lefts == sorted(lefts)
        assert all(inside(word.coords.bbox, line.coords.bbox) for word in line.words)
        assert line.text_equivs == [] and all(word.text_equivs == [] for word in line.words)
    assert page.reading_order is not None
    assert page.reading_order.region_ids() == [region.id for region in page.regions]
    ids = [region.id, *(line.id for line in region.lines)]
    assert len(set(ids)) == len(ids)
    [step] = pcgts.metadata_extras
    assert step.name == "MetadataItem" and b'value="ocrd-swarm-segment"' in step.xml


@pytest.mark.parametrize(("level", "lines", "words"), [("region", 0, 0), ("line", 3, 0)])
def test_lowest_level(tmp_path: Path, level: str, lines: int, words: int) -> None:
    [region] = segment(tmp_path, rendered_page(tmp_path), lowest_level=level).page.text_regions()
    assert len(region.lines) == lines
    assert sum(len(line.words) for line in region.lines) == words


def hand_made_region(tmp_path: Path) -> PcGts:
    """A PAGE for the rendered page with one region around the text and nothing inside."""
    pcgts = PcGts.new("OCR-D-IMG/page.png", *SIZE)
    pcgts.page.regions.append(TextRegion("mine", Coords.from_bbox((100, 100, 800, 330))))
    return pcgts


def test_existing_regions_are_kept_and_filled(tmp_path: Path) -> None:
    rendered_page(tmp_path)
    pcgts = segment(tmp_path, page_input(tmp_path, hand_made_region(tmp_path)), lowest_level="line")
    [region] = pcgts.page.regions
    assert isinstance(region, TextRegion)
    assert (region.id, region.coords.bbox) == ("mine", (100, 100, 800, 330))
    assert [line.id for line in region.lines] == [f"mine_line_{n:04d}" for n in (1, 2, 3)]
    assert all(inside(line.coords.bbox, region.coords.bbox) for line in region.lines)


def test_existing_lines_get_words(tmp_path: Path) -> None:
    lines = segment(tmp_path, rendered_page(tmp_path), lowest_level="line")
    pcgts = segment(tmp_path, page_input(tmp_path, lines), out="OCR-D-WORDS")
    [before], [after] = lines.page.text_regions(), pcgts.page.text_regions()
    assert [line.id for line in after.lines] == [line.id for line in before.lines]
    assert [len(line.words) for line in after.lines] == [len(line.split()) for line in LINES]


def test_overwrite_segments(tmp_path: Path) -> None:
    rendered_page(tmp_path)
    file = page_input(tmp_path, hand_made_region(tmp_path))
    pcgts = segment(tmp_path, file, overwrite_segments=True, lowest_level="line")
    [region] = pcgts.page.text_regions()
    assert region.id != "mine" and len(region.lines) == 3


def test_padding_grows_the_boxes(tmp_path: Path) -> None:
    file = rendered_page(tmp_path)
    tight = segment(tmp_path, file, lowest_level="line").page.text_regions()[0]
    padded = segment(tmp_path, file, lowest_level="line", padding=5).page.text_regions()[0]
    x0, y0, x1, y1 = tight.coords.bbox
    assert padded.coords.bbox == (x0 - 5, y0 - 5, x1 + 5, y1 + 5)
    for before, after in zip(tight.lines, padded.lines, strict=True):
        assert inside(before.coords.bbox, after.coords.bbox)
        assert inside(after.coords.bbox, padded.coords.bbox)


def test_shrink_polygons(tmp_path: Path) -> None:
    file = rendered_page(tmp_path)
    boxes = segment(tmp_path, file).page.text_regions()[0]
    hulls = segment(tmp_path, file, shrink_polygons=True).page.text_regions()[0]
    assert len(hulls.coords.points) > 4  # the lines' different lengths show
    assert inside(hulls.coords.bbox, boxes.coords.bbox)
    for line in hulls.lines:
        assert inside(line.coords.bbox, hulls.coords.bbox)


def test_segment_a_real_scan_finds_the_ground_truth_lines(
    shared_data: Path, tmp_path: Path
) -> None:
    source = shared_data / "kant_aufklaerung_1784" / "data"
    (tmp_path / "OCR-D-IMG").mkdir()
    shutil.copy(source / "OCR-D-IMG" / "INPUT_0017.tif", tmp_path / "OCR-D-IMG")
    image = tmp_path / "OCR-D-IMG" / "INPUT_0017.tif"
    file = InputFile("OCR-D-IMG", "OCR-D-IMG_0017", "image/tiff", image)
    found = segment(tmp_path, file, lowest_level="line")
    truth = parse_page(source / "OCR-D-GT-PAGE" / "PAGE_0017_PAGE.xml")
    found_boxes = [
        line.coords.bbox for region in found.page.text_regions() for line in region.lines
    ]
    truth_lines: list[TextLine] = [
        line for region in truth.page.text_regions() for line in region.lines
    ]
    matched = [most_overlapping(line.coords.bbox, found_boxes) for line in truth_lines]
    assert sum(match is not None for match in matched) >= 0.9 * len(truth_lines)


def rendered_table(workspace: Path) -> InputFile:
    """A ruled table of 6 x 3 cells under a heading, drawn at 300 dpi."""
    image = Image.new("L", (1900, 1000), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=40)
    draw.text((150, 100), "A table of fruit prices in the market", fill=0, font=font)
    for row, fruit in enumerate(["Apple", "Pear", "Plum", "Cherry", "Grape", "Lemon"]):
        for column in range(3):
            x, y = 150 + column * 550, 250 + row * 90
            draw.rectangle((x, y, x + 550, y + 90), outline=0, width=3)
            draw.text((x + 20, y + 22), f"{fruit} {row * 3 + column}", fill=0, font=font)
    path = workspace / "OCR-D-IMG" / "table.png"
    path.parent.mkdir(parents=True)
    image.save(path, dpi=(300, 300))
    return InputFile("OCR-D-IMG", "OCR-D-IMG_0001", "image/png", path)


def test_tables_and_separators(tmp_path: Path) -> None:
    file = rendered_table(tmp_path)
    page = segment(tmp_path, file, lowest_level="line").page
    [table] = [
        region
        for region in page.regions
        if isinstance(region, OtherRegion) and region.kind == "TableRegion"
    ]
    cells = [cell for cell in table.regions if isinstance(cell, TextRegion)]
    assert cells and sum(len(cell.lines) for cell in cells) == 6  # a line per row
    assert all(inside(cell.coords.bbox, table.coords.bbox) for cell in cells)
    assert any(isinstance(r, OtherRegion) and r.kind == "SeparatorRegion" for r in page.regions)
    assert page.reading_order is not None
    assert {cell.id for cell in cells} <= set(page.reading_order.region_ids())

    flat = segment(tmp_path, file, out="OCR-D-FLAT", find_tables=False).page
    assert all(
        not isinstance(region, OtherRegion) or region.kind != "TableRegion"
        for region in flat.regions
    )
    assert len(flat.text_regions()) > len(page.text_regions())
