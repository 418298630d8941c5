"""ALTO v4 export: structure, boxes, confidences, styles, reading order of the real GT."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from ocrswarm.formats.alto import ALTO_NS, page_to_alto
from ocrswarm.formats.page import PcGts, TextEquiv, TextLine, TextRegion, parse_page
from ocrswarm.formats.safexml import parse_xml
from tests.formats.test_page import box, gt_files, sample_pcgts
from tests.formats.test_text import gt_lines_by_region

A = {"a": ALTO_NS}


def alto_root(pcgts: PcGts, **options: Any) -> Any:
    return parse_xml(page_to_alto(pcgts, **options)).getroot()


def box_of(element: Any) -> tuple[int, int, int, int]:
    x, y = int(element.get("HPOS")), int(element.get("VPOS"))
    return x, y, x + int(element.get("WIDTH")), y + int(element.get("HEIGHT"))


def test_header_and_page() -> None:
    root = alto_root(sample_pcgts())

    assert root.tag == f"{{{ALTO_NS}}}alto"
    assert root.findtext("a:Description/a:MeasurementUnit", namespaces=A) == "pixel"
    file_name = root.findtext("a:Description/a:sourceImageInformation/a:fileName", namespaces=A)
    assert file_name == "OCR-D-IMG/page_0001.png"
    page = root.find("a:Layout/a:Page", A)
    assert (page.get("WIDTH"), page.get("HEIGHT"), page.get("PHYSICAL_IMG_NR")) == (
        "1240",
        "1754",
        "1",
    )
    assert box_of(page.find("a:PrintSpace", A)) == (90, 90, 1150, 1650)


def test_file_name_can_be_overridden() -> None:
    root = alto_root(sample_pcgts(), file_name="images/0001.tif")

    assert root.findtext(".//a:fileName", namespaces=A) == "images/0001.tif"


def test_blocks_follow_reading_order_and_strings_carry_words() -> None:
    pcgts = sample_pcgts()
    root = alto_root(pcgts)

    blocks = root.findall(".//a:TextBlock", A)
    assert [block.get("ID") for block in blocks] == ["r_head", "r_body", "r_cell"]
    line = root.find(".//a:TextLine[@ID='l_1']", A)
    strings = line.findall("a:String", A)
    words = pcgts.page.text_regions()[0].lines[0].words
    assert [string.get("CONTENT") for string in strings] == ["The", "quick", "brown"]
    assert [box_of(string) for string in strings] == [word.coords.bbox for word in words]
    assert [string.get("WC") for string in strings] == ["0.9", "0.9", "0.9"]
    assert [child.tag.rpartition("}")[2] for child in line] == [
        "String",
        "SP",
        "String",
        "SP",
        "String",
    ]
    assert line.find("a:SP", A).attrib == {"HPOS": "180", "VPOS": "200", "WIDTH": "20"}
    assert line.get("BASELINE") == "236"  # mean of the baseline points' heights


def test_font_styles_come_from_the_innermost_text_style() -> None:
    root = alto_root(sample_pcgts())

    fox = root.find(".//a:String[@ID='w_fox']", A)
    jumps = root.find(".//a:String[@ID='w_jumps']", A)
    heading = root.find(".//a:TextLine[@ID='l_h']/a:String", A)

    assert fox.get("STYLE") == "bold"  # the word's own style
    assert jumps.get("STYLE") == "italics"  # inherited from the region
    assert heading.get("STYLE") is None


def test_other_regions_become_illustrations_and_graphical_elements() -> None:
    root = alto_root(sample_pcgts())

    illustration = root.find(".//a:Illustration", A)
    separator = root.find(".//a:GraphicalElement", A)

    assert (illustration.get("ID"), illustration.get("TYPE")) == ("r_image", "ImageRegion")
    assert box_of(illustration) == (90, 800, 600, 1200)
    assert separator.get("ID") == "r_sep"


def test_ids_are_unique() -> None:
    data = page_to_alto(sample_pcgts())
    ids = Counter(element.get("ID") for element in parse_xml(data).getroot().iter())
    del ids[None]

    assert [id_ for id_, count in ids.items() if count > 1] == []


def test_lines_without_words_are_split_over_the_line_box() -> None:
    pcgts = PcGts.new("scan.png", 1000, 1000)
    line = TextLine("l1", box(100, 10, 300, 50), text_equivs=[TextEquiv("ab  cdef g", 0.5)])
    pcgts.page.regions = [TextRegion("r1", box(100, 10, 300, 50), [line])]

    strings = alto_root(pcgts).findall(".//a:String", A)

    assert [string.get("CONTENT") for string in strings] == ["ab", "cdef", "g"]
    # "ab cdef g" has 9 characters over 200 px: each word gets its share.
    assert [box_of(string) for string in strings] == [
        (100, 10, 144, 50),
        (167, 10, 256, 50),
        (278, 10, 300, 50),
    ]
    assert {string.get("WC") for string in strings} == {"0.5"}


def test_region_text_without_lines_becomes_one_line() -> None:
    pcgts = PcGts.new("scan.png", 1000, 1000)
    pcgts.page.regions = [TextRegion("r1", box(0, 0, 90, 30), text_equivs=[TextEquiv("x y z")])]

    lines = alto_root(pcgts).findall(".//a:TextLine", A)

    assert len(lines) == 1
    assert box_of(lines[0]) == (0, 0, 90, 30)
    assert [string.get("CONTENT") for string in lines[0].findall("a:String", A)] == [
        "x",
        "y",
        "z",
    ]


def test_lines_without_text_are_left_out() -> None:
    pcgts = PcGts.new("scan.png", 1000, 1000)
    pcgts.page.regions = [TextRegion("r1", box(0, 0, 90, 30), [TextLine("l", box(0, 0, 9, 9))])]

    root = alto_root(pcgts)

    assert root.find(".//a:TextBlock[@ID='r1']", A) is not None
    assert root.find(".//a:TextLine", A) is None


def test_polygons_get_a_shape_rectangles_do_not(shared_data: Path) -> None:
    bebel = parse_page(shared_data / "bebel_frau_1879/GT-PAGE/bebel_frau_1879_0146.xml")
    polygon = bebel.page.text_regions()[0].coords

    block = alto_root(bebel).find(".//a:TextBlock[@ID='r1']", A)

    assert block.find("a:Shape/a:Polygon", A).get("POINTS") == polygon.points_text()
    assert alto_root(sample_pcgts()).find(".//a:Shape", A) is None


def test_bebel_gt_text_comes_out_in_reading_order(shared_data: Path) -> None:
    for path in sorted((shared_data / "bebel_frau_1879" / "GT-PAGE").glob("*.xml")):
        root = alto_root(parse_page(path))

        alto_lines = [
            [
                " ".join(string.get("CONTENT") for string in line.iterfind("a:String", A))
                for line in block.iterfind("a:TextLine", A)
            ]
            for block in root.iterfind(".//a:TextBlock", A)
        ]

        expected = gt_lines_by_region(path)
        assert alto_lines == [[" ".join(text.split()) for text in lines] for lines in expected]


def test_kant_gt_words_become_strings(shared_data: Path) -> None:
    for path in sorted((shared_data / "kant_aufklaerung_1784/data/OCR-D-GT-PAGE").glob("*.xml")):
        gt = parse_xml(path).getroot()
        ns = {"pc": gt.tag[1:].partition("}")[0]}
        gt_words = {
            line.get("id"): [
                word.findtext("pc:TextEquiv/pc:Unicode", "", ns)
                for word in line.iterfind("pc:Word", ns)
            ]
            for line in gt.iterfind(".//pc:TextLine", ns)
        }

        root = alto_root(parse_page(path))

        alto_words = {
            line.get("ID"): [string.get("CONTENT") for string in line.iterfind("a:String", A)]
            for line in root.iterfind(".//a:TextLine", A)
        }
        assert alto_words == gt_words, path


def test_real_gt_string_boxes_lie_in_their_lines(shared_data: Path) -> None:
    for path in gt_files(shared_data):
        for line in alto_root(parse_page(path)).iterfind(".//a:TextLine", A):
            x0, y0, x1, y1 = box_of(line)
            for string in line.iterfind("a:String", A):
                sx0, sy0, sx1, sy1 = box_of(string)
                # Word polygons of the kant GT stick out of their lines by a few pixels.
                assert x0 - 10 <= sx0 <= sx1 <= x1 + 10, (path, string.get("ID"))
                assert y0 - 10 <= sy0 <= sy1 <= y1 + 10, (path, string.get("ID"))
