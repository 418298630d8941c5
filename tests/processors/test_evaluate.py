"""Line CER: edit distance, normalisation, and matching lines by the overlap of their boxes."""

from __future__ import annotations

import pytest

from ocrswarm.formats.page import Coords, PcGts, TextEquiv, TextLine, TextRegion
from ocrswarm.processors.evaluate import CerResult, edit_distance, line_cer, normalize


@pytest.mark.parametrize(
    ("a", "b", "distance"),
    [
        ("", "", 0),
        ("abc", "", 3),
        ("", "abc", 3),
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("same", "same", 0),
        ("ab", "ba", 2),
    ],
)
def test_edit_distance(a: str, b: str, distance: int) -> None:
    assert edit_distance(a, b) == distance
    assert edit_distance(b, a) == distance


def test_normalize() -> None:
    assert normalize("  Wiſſen \t und\n Gewiſſen ") == "Wissen und Gewissen"
    assert normalize("Mu\u0308ller") == "Müller"  # decomposed and composed are the same text
    assert normalize("uͤber") == "uͤber"  # a superscript e is not an umlaut: left alone


def page(*lines: tuple[str, tuple[int, int, int, int], str]) -> PcGts:
    pcgts = PcGts.new("page.png", 1000, 1000)
    region = TextRegion("r", Coords.from_bbox((0, 0, 999, 999)))
    for line_id, box, text in lines:
        region.lines.append(TextLine(line_id, Coords.from_bbox(box), text_equivs=[TextEquiv(text)]))
    pcgts.page.regions.append(region)
    return pcgts


def test_lines_are_matched_by_overlap_not_by_order() -> None:
    truth = page(("t1", (0, 0, 500, 40), "first line"), ("t2", (0, 50, 500, 90), "second"))
    ocr = page(("o2", (5, 52, 480, 88), "secnd"), ("o1", (3, 2, 490, 38), "first line"))
    result = line_cer(truth, ocr)
    assert [(m.gt_id, m.ocr_id, m.errors) for m in result.lines] == [
        ("t1", "o1", 0),
        ("t2", "o2", 1),
    ]
    assert (result.errors, result.characters) == (1, 16)
    assert result.cer == pytest.approx(1 / 16)
    assert result.unmatched == 0


def test_unmatched_lines_are_wholly_wrong_and_extra_lines_cost_nothing() -> None:
    truth = page(("t1", (0, 0, 500, 40), "kept"), ("t2", (0, 500, 500, 540), "missed"))
    ocr = page(("o1", (0, 0, 500, 40), "kept"), ("noise", (0, 900, 100, 950), "zzz"))
    result = line_cer(truth, ocr)
    assert (result.errors, result.characters, result.unmatched) == (6, 10, 1)
    assert result.lines[1].ocr_id is None and result.lines[1].ocr_text == ""


def test_the_most_overlapping_line_wins_and_may_serve_twice() -> None:
    truth = page(("t1", (0, 0, 200, 40), "A"), ("t2", (300, 0, 700, 40), "ufklärung"))
    ocr = page(("merged", (0, 0, 700, 40), "A ufklärung"), ("sliver", (0, 35, 200, 60), "x"))
    result = line_cer(truth, ocr)
    assert [m.ocr_id for m in result.lines] == ["merged", "merged"]
    assert result.errors == 10 + 2


def test_empty_ground_truth_lines_are_skipped_and_results_add_up() -> None:
    truth = page(("t1", (0, 0, 100, 40), "  "), ("t2", (0, 50, 100, 90), "ſo"))
    ocr = page(("o1", (0, 50, 100, 90), "so"))
    result = line_cer(truth, ocr)
    assert [m.gt_id for m in result.lines] == ["t2"]
    assert result.cer == 0.0
    total = result + CerResult(3, 6, ())
    assert (total.errors, total.characters, total.cer) == (3, 8, 3 / 8)
    assert CerResult(0, 0, ()).cer == 0.0
