"""Plain-text export: reading order, one line per TextLine, blank lines between regions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrswarm.formats.page import (
    PcGts,
    ReadingOrder,
    TextEquiv,
    TextLine,
    TextRegion,
    parse_page,
)
from ocrswarm.formats.safexml import parse_xml
from ocrswarm.formats.text import page_to_text
from tests.formats.test_page import box, gt_files, sample_line, sample_pcgts


def gt_lines_by_region(path: Path, *, from_words: bool = False) -> list[list[str]]:
    """The GT's non-empty line texts per text region, read with plain lxml, in reading order
    (regions the reading order names first, then the rest in document order).

    With `from_words`, a line that has Word elements reads as their texts joined by spaces.
    """
    root = parse_xml(path).getroot()
    ns = {"pc": root.tag[1:].partition("}")[0]}
    regions = {region.get("id"): region for region in root.iterfind(".//pc:TextRegion", ns)}
    refs = root.iterfind(".//pc:RegionRefIndexed", ns)
    refs = sorted(refs, key=lambda ref: int(ref.get("index")))
    order = [ref.get("regionRef") for ref in refs if ref.get("regionRef") in regions]
    order += [region_id for region_id in regions if region_id not in order]

    def line_text(line: Any) -> str:
        words = [
            word.findtext("pc:TextEquiv/pc:Unicode", "", ns)
            for word in line.iterfind("pc:Word", ns)
        ]
        if from_words and words:
            return " ".join(words)
        return str(line.findtext("pc:TextEquiv/pc:Unicode", "", ns))

    return [
        [
            text
            for line in regions[region_id].iterfind("pc:TextLine", ns)
            if (text := line_text(line))
        ]
        for region_id in order
    ]


def expected_text(path: Path) -> str:
    blocks = ["\n".join(lines) for lines in gt_lines_by_region(path) if lines]
    return "\n\n".join(blocks) + "\n"


def test_real_gt_text_is_the_lines_in_reading_order(shared_data: Path) -> None:
    for path in gt_files(shared_data):
        text = page_to_text(parse_page(path))

        assert text == expected_text(path), path


def test_bebel_text_starts_with_the_page_number(shared_data: Path) -> None:
    text = page_to_text(
        parse_page(shared_data / "bebel_frau_1879/GT-PAGE/bebel_frau_1879_0146.xml")
    )

    assert text.startswith("— 140 —\n\n")


def test_sample_page_in_reading_order() -> None:
    assert page_to_text(sample_pcgts()) == "Title\n\nThe quick brown\nFox jumps\n\ncell\n"


def test_empty_page_gives_empty_text() -> None:
    assert page_to_text(PcGts.new("scan.png", 100, 100)) == ""


def test_empty_lines_and_regions_are_left_out() -> None:
    pcgts = PcGts.new("scan.png", 1000, 1000)
    empty_line = TextLine("l_empty", box(0, 50, 100, 90))
    region = TextRegion("r1", box(0, 0, 500, 200), [sample_line("l1", 0, ["a"]), empty_line])
    region.lines.append(sample_line("l2", 100, ["b", "c"]))
    pcgts.page.regions = [region, TextRegion("r_empty", box(0, 300, 10, 310))]

    assert page_to_text(pcgts) == "a\nb c\n"


def test_region_level_text_is_used_when_there_are_no_lines() -> None:
    pcgts = PcGts.new("scan.png", 1000, 1000)
    pcgts.page.regions = [
        TextRegion("r1", box(0, 0, 100, 100), text_equivs=[TextEquiv("only\nregion")]),
        TextRegion("r2", box(0, 200, 100, 300), [sample_line("l", 200, ["lines"])]),
    ]
    pcgts.page.reading_order = ReadingOrder.from_region_ids(["r2", "r1"])

    assert page_to_text(pcgts) == "lines\n\nonly\nregion\n"


def test_grouping_region_does_not_repeat_its_children() -> None:
    pcgts = PcGts.new("scan.png", 1000, 1000)
    group = TextRegion(
        "r_group",
        box(0, 0, 100, 110),
        regions=[
            TextRegion("r_a", box(0, 0, 100, 50), [sample_line("l_a", 0, ["first"])]),
            TextRegion("r_b", box(0, 60, 100, 110), [sample_line("l_b", 60, ["second"])]),
        ],
        text_equivs=[TextEquiv("first\nsecond")],
    )
    pcgts.page.regions = [group]

    assert page_to_text(pcgts) == "first\n\nsecond\n"
