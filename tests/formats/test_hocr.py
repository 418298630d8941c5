"""hOCR export: well-formed XHTML with bbox, baseline and x_wconf in title properties."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrswarm.formats.hocr import XHTML_NS, page_to_hocr
from ocrswarm.formats.page import PcGts, TextEquiv, TextLine, TextRegion, parse_page
from ocrswarm.formats.safexml import parse_xml
from tests.formats.test_page import box, gt_files, sample_pcgts
from tests.formats.test_text import gt_lines_by_region

H = {"h": XHTML_NS}


def hocr_root(pcgts: PcGts, **options: Any) -> Any:
    return parse_xml(page_to_hocr(pcgts, **options)).getroot()


def properties(element: Any) -> dict[str, str]:
    """The hOCR title properties: 'bbox 1 2 3 4; x_wconf 90' → {'bbox': '1 2 3 4', ...}."""
    pairs = (item.strip().partition(" ") for item in element.get("title").split(";"))
    return {name: value for name, _, value in pairs}


def of_class(root: Any, name: str) -> list[Any]:
    return root.findall(f".//*[@class='{name}']")


def test_head_names_the_system_and_capabilities() -> None:
    root = hocr_root(sample_pcgts(), title="Sample")

    assert root.tag == f"{{{XHTML_NS}}}html"
    assert root.findtext("h:head/h:title", namespaces=H) == "Sample"
    metas = {meta.get("name"): meta.get("content") for meta in root.iterfind("h:head/h:meta", H)}
    assert metas["ocr-system"] == "ocrswarm"
    assert "ocrx_word" in metas["ocr-capabilities"].split()


def test_page_carries_image_and_bbox() -> None:
    pcgts = sample_pcgts()
    pcgts.page.image_filename = 'odd "name".png'

    (page,) = of_class(hocr_root(pcgts), "ocr_page")

    assert properties(page) == {
        "image": '"odd \\"name\\".png"',
        "bbox": "0 0 1240 1754",
        "ppageno": "0",
    }


def test_areas_follow_reading_order_with_paragraphs_and_lines() -> None:
    root = hocr_root(sample_pcgts())

    areas = of_class(root, "ocr_carea")

    assert [area.get("id") for area in areas] == ["r_head", "r_body", "r_cell"]
    assert properties(areas[1])["bbox"] == "90 200 1150 400"
    paragraph = areas[1].find("h:p", H)
    assert paragraph.get("class") == "ocr_par"
    assert [line.get("id") for line in paragraph.iterfind("h:span", H)] == ["l_1", "l_fox"]


def test_words_carry_bbox_and_confidence_and_lines_a_baseline() -> None:
    pcgts = sample_pcgts()
    root = hocr_root(pcgts)

    line = root.find(".//*[@id='l_1']")
    words = line.findall("h:span", H)

    assert [word.get("class") for word in words] == ["ocrx_word"] * 3
    assert [word.text for word in words] == ["The", "quick", "brown"]
    assert [properties(word) for word in words] == [
        {"bbox": "100 200 180 240", "x_wconf": "90"},
        {"bbox": "200 200 280 240", "x_wconf": "90"},
        {"bbox": "300 200 380 240", "x_wconf": "90"},
    ]
    # Baseline from (100,235) to (400,237) in a line box whose bottom is 240.
    assert properties(line) == {"bbox": "100 200 400 240", "baseline": "0.00667 -5"}
    assert "".join(line.itertext()) == "The quick brown"


def test_text_is_escaped_and_survives() -> None:
    pcgts = sample_pcgts()
    pcgts.page.text_regions()[0].lines[0].words[0].set_text("<b>&amp;")

    data = page_to_hocr(pcgts)

    assert b"&lt;b&gt;&amp;amp;" in data
    assert parse_xml(data).getroot().find(".//*[@id='l_1_w0']").text == "<b>&amp;"


def test_lines_without_words_carry_their_text() -> None:
    pcgts = PcGts.new("scan.png", 100, 100)
    line = TextLine("l1", box(0, 0, 90, 20), text_equivs=[TextEquiv("whole line", 0.7)])
    pcgts.page.regions = [
        TextRegion("r1", box(0, 0, 90, 20), [line]),
        TextRegion("r2", box(0, 30, 90, 50), text_equivs=[TextEquiv("region only")]),
    ]

    root = hocr_root(pcgts)

    lines = of_class(root, "ocr_line")
    assert [(line.get("id"), line.text) for line in lines] == [
        ("l1", "whole line"),
        ("r2_line", "region only"),
    ]
    assert properties(lines[1]) == {"bbox": "0 30 90 50"}


def test_ids_are_unique() -> None:
    ids = [element.get("id") for element in hocr_root(sample_pcgts()).iter() if element.get("id")]

    assert len(ids) == len(set(ids))


def test_real_gt_lines_come_out_in_reading_order(shared_data: Path) -> None:
    for path in gt_files(shared_data):
        root = hocr_root(parse_page(path))

        hocr_lines = [
            ["".join(line.itertext()) for line in area.iterfind(".//*[@class='ocr_line']")]
            for area in of_class(root, "ocr_carea")
        ]

        expected = [lines for lines in gt_lines_by_region(path, from_words=True) if lines]
        assert hocr_lines == expected, path
