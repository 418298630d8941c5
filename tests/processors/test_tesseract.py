"""The Tesseract wrapper (layout analysis, recognition) and the PAGE builder over its results."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import tesserocr  # type: ignore[import-untyped]
from PIL import Image

from ocrswarm.formats.page import OtherRegion, Point, TextRegion
from ocrswarm.processors.annotate import lines_of, words_of
from ocrswarm.processors.tessdata import ModelNotFoundError
from ocrswarm.processors.tesseract import (
    Level,
    PageBuilder,
    PointMap,
    Segment,
    Tesseract,
    TesseractError,
    convex_hull,
)
from tests.processors.tesseract_pages import LINES, TEXT, inside, similarity
from tests.render import render_page


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    path = render_page(tmp_path_factory.mktemp("page") / "page.png", LINES, size=(1240, 600))
    return Image.open(path)


@pytest.fixture(scope="module")
def eng() -> Iterator[Tesseract]:
    tesseract = Tesseract("eng")
    yield tesseract
    tesseract.close()


def test_recognition_finds_lines_words_and_text(eng: Tesseract, page: Image.Image) -> None:
    blocks = eng.read(page, dpi=300, psm=3, depth=Level.WORD, recognize=True)
    lines = lines_of(blocks)
    assert len(lines) == len(LINES)
    assert similarity("\n".join(line.text for line in lines), TEXT) >= 0.95
    for line, expected in zip(lines, LINES, strict=True):
        assert len(line.children) == len(expected.split())
        assert line.baseline is not None
        for word in line.children:
            assert word.text and word.conf is not None and 0 <= word.conf <= 1
            assert inside(word.box, line.box)
    assert all(inside(line.box, (0, 0, *page.size)) for line in lines)
    tops = [line.box[1] for line in lines]
    assert tops == sorted(tops)


def test_glyphs_spell_their_words(eng: Tesseract, page: Image.Image) -> None:
    blocks = eng.read(page, dpi=300, psm=3, depth=Level.GLYPH, recognize=True)
    words = words_of(blocks)
    assert words
    for word in words:
        assert "".join(glyph.text for glyph in word.children) == word.text
        assert all(inside(glyph.box, word.box) for glyph in word.children)


def test_layout_analysis_needs_no_model(page: Image.Image) -> None:
    layout = Tesseract(None)
    try:
        blocks = layout.read(page, dpi=300, psm=3, depth=Level.WORD, recognize=False)
    finally:
        layout.close()
    lines = lines_of(blocks)
    assert [len(line.children) for line in lines] == [len(line.split()) for line in LINES]
    assert all(line.text == "" and line.conf is None for line in lines)


def test_tesseract_variables_apply(page: Image.Image) -> None:
    digits = Tesseract("eng", variables={"tessedit_char_whitelist": "0123456789"})
    try:
        blocks = digits.read(page, dpi=300, psm=3, depth=Level.LINE, recognize=True)
    finally:
        digits.close()
    text = "".join(line.text for line in lines_of(blocks))
    assert "1879" in text
    assert set(text) <= set("0123456789 ")


def test_unknown_variable_is_named() -> None:
    with pytest.raises(TesseractError, match="no_such_variable"):
        Tesseract(None, variables={"no_such_variable": 1, "textord_tabfind_find_tables": False})


def test_missing_model_says_where_we_looked() -> None:
    with pytest.raises(ModelNotFoundError) as caught:
        Tesseract("xyz_no_such_model")
    message = str(caught.value)
    assert "'xyz_no_such_model'" in message and "looked in" in message


def test_damaged_model_is_a_clear_error(tmp_path: Path) -> None:
    model = tmp_path / "broken.traineddata"
    model.write_bytes(b"not a model")
    with pytest.raises(TesseractError, match="could not load model"):
        Tesseract(str(model))


def test_an_image_too_small_yields_nothing(eng: Tesseract) -> None:
    tiny = Image.new("L", (2, 40), 0)
    assert eng.read(tiny, dpi=300, psm=7, depth=Level.WORD, recognize=True) == []


def test_level_names() -> None:
    assert [Level.named(name) for name in ("region", "line", "word", "glyph")] == list(Level)
    assert Level.REGION < Level.GLYPH


# --- the PAGE builder, on segments made by hand ------------------------------------------


def shifted(dx: int, dy: int) -> PointMap:
    def shift(points: Sequence[tuple[float, float]]) -> list[Point]:
        return [(round(x) + dx, round(y) + dy) for x, y in points]

    return shift


def text_block(box: tuple[int, int, int, int], *lines: Segment) -> Segment:
    return Segment(box, list(lines), block_type=tesserocr.PT.FLOWING_TEXT)


def line(box: tuple[int, int, int, int], *words: Segment, text: str = "") -> Segment:
    return Segment(box, list(words), text=text, conf=0.5, baseline=((box[0], 30), (box[2], 30)))


def builder(depth: Level, *, padding: int = 0, shrink_polygons: bool = False) -> PageBuilder:
    """Builds into a page where this image sits at (100, 1000) and region_0001 exists."""
    return PageBuilder(
        to_page=shifted(100, 1000),
        used_ids={"region_0001"},
        depth=depth,
        with_text=True,
        padding=padding,
        shrink_polygons=shrink_polygons,
    )


def test_builder_maps_clips_and_names_segments() -> None:
    words = [Segment((10, 10, 40, 40), text="ab", conf=0.9), Segment((50, 5, 300, 45), text="c")]
    blocks = [text_block((0, 0, 200, 50), line((5, 5, 250, 45), *words))]
    [region] = builder(Level.WORD).regions(blocks, (0, 0, 1000, 1000))
    assert isinstance(region, TextRegion)
    assert region.id == "region_0001_2"  # region_0001 was taken
    assert region.type == "paragraph"
    assert region.coords.points == [(100, 1000), (299, 1000), (299, 1049), (100, 1049)]
    [text_line] = region.lines
    assert text_line.id == "region_0001_2_line_0001"
    assert text_line.coords.bbox == (105, 1005, 299, 1044)  # clipped to the region
    assert text_line.baseline is not None
    assert text_line.baseline.points == [(105, 1030), (299, 1030)]
    assert [word.text for word in text_line.words] == ["ab", "c"]
    assert [word.conf for word in text_line.words] == [0.9, None]
    assert text_line.words[1].coords.bbox == (150, 1005, 299, 1044)
    assert text_line.text_equivs == []  # joining upwards is the caller's job


def test_builder_text_on_regions_joins_lines() -> None:
    blocks = [
        Segment(
            (0, 0, 200, 100),
            [line((0, 0, 200, 40), text="one"), line((0, 50, 200, 90), text="two")],
            conf=0.75,
            block_type=tesserocr.PT.HEADING_TEXT,
        )
    ]
    [region] = builder(Level.REGION).regions(blocks, (0, 0, 1000, 1000))
    assert isinstance(region, TextRegion)
    assert (region.text, region.conf, region.type, region.lines) == (
        "one\ntwo",
        0.75,
        "heading",
        [],
    )


def test_builder_padding_stays_within_the_parent() -> None:
    blocks = [text_block((0, 0, 200, 50), line((5, 5, 150, 45)))]
    [region] = builder(Level.LINE, padding=10).regions(blocks, (0, 0, 205, 1000))
    assert isinstance(region, TextRegion)
    assert region.coords.bbox == (100, 1000, 304, 1059)  # grown, but not past the clip
    assert region.lines[0].coords.bbox == (100, 1000, 259, 1054)


def test_builder_shrinks_to_the_hull_of_the_glyphs() -> None:
    glyphs = [Segment((0, 10, 10, 20)), Segment((20, 0, 30, 30))]
    word = Segment((0, 0, 30, 30), glyphs)
    blocks = [text_block((0, 0, 30, 30), line((0, 0, 30, 30), word))]
    [region] = builder(Level.WORD, shrink_polygons=True).regions(blocks, (0, 0, 100, 100))
    assert isinstance(region, TextRegion)
    points = region.lines[0].words[0].coords.points
    assert (100, 1000) not in points  # the empty top left corner is cut off
    assert set(points) == {(100, 1010), (100, 1019), (120, 1000), (129, 1000), (129, 1029)} | {
        (120, 1029)
    }


def test_builder_non_text_regions_and_tables_in_reading_order() -> None:
    cell = Segment((10, 10, 90, 40), [line((10, 10, 90, 40), text="x")], block_type=1)
    blocks = [
        Segment((0, 0, 100, 50), [cell], block_type=tesserocr.PT.TABLE),
        Segment((0, 60, 100, 100), block_type=tesserocr.PT.FLOWING_IMAGE),
        Segment((0, 110, 100, 112), block_type=tesserocr.PT.HORZ_LINE),
        text_block((0, 120, 100, 150), line((0, 120, 100, 150), text="y")),
    ]
    build = builder(Level.LINE)
    regions = build.regions(blocks, (0, 0, 1000, 1000))
    table, image, separator, text = regions
    assert isinstance(table, OtherRegion) and table.kind == "TableRegion"
    assert [type(region).__name__ for region in table.regions] == ["TextRegion"]
    assert isinstance(image, OtherRegion) and image.kind == "ImageRegion"
    assert isinstance(separator, OtherRegion) and separator.kind == "SeparatorRegion"
    assert isinstance(text, TextRegion)
    order = build.reading_order(regions)
    assert order is not None
    assert order.region_ids() == [table.id, table.regions[0].id, image.id, separator.id, text.id]
    assert build.reading_order([]) is None


def test_convex_hull() -> None:
    square = [(0, 0), (10, 0), (10, 10), (0, 10), (5, 5), (5, 0)]
    assert sorted(convex_hull(square)) == [(0, 0), (0, 10), (10, 0), (10, 10)]
    assert convex_hull([(0, 0), (5, 0), (9, 0)]) == [(0, 0), (9, 0)]
    assert convex_hull([(3, 3)]) == [(3, 3)]
