"""PAGE-XML: build, serialise, validate, parse; old namespaces; real GT round trips; errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrswarm.errors import PageXmlError, UnsafeInputError
from ocrswarm.formats.page import (
    PAGE_NS_2013,
    PAGE_NS_2017,
    PAGE_NS_2019,
    AlternativeImage,
    Baseline,
    Coords,
    Glyph,
    OtherRegion,
    PcGts,
    RawElement,
    ReadingOrder,
    ReadingOrderGroup,
    TextEquiv,
    TextLine,
    TextRegion,
    TextStyle,
    Word,
    page_to_bytes,
    parse_page,
    save_page,
    set_text_consistently,
    text_inconsistencies,
    unique_id,
    validate_page,
)
from ocrswarm.formats.safexml import parse_xml


def box(x0: int, y0: int, x1: int, y1: int) -> Coords:
    return Coords.from_bbox((x0, y0, x1, y1))


def sample_line(line_id: str, y: int, words: list[str], *, conf: float = 0.9) -> TextLine:
    """A line of words laid out left to right, 100 px per word, with a baseline."""
    line_words = [
        Word(
            f"{line_id}_w{n}",
            box(100 + 100 * n, y, 180 + 100 * n, y + 40),
            text_equivs=[TextEquiv(text, conf)],
        )
        for n, text in enumerate(words)
    ]
    line = TextLine(
        line_id,
        box(100, y, 100 + 100 * len(words), y + 40),
        Baseline([(100, y + 35), (100 + 100 * len(words), y + 37)]),
        line_words,
    )
    line.update_text()
    return line


def sample_pcgts() -> PcGts:
    """A page using every modelled feature, reading order deliberately not document order."""
    pcgts = PcGts.new("OCR-D-IMG/page_0001.png", 1240, 1754, creator="tests")
    pcgts.pcgts_id = "pc_sample"
    pcgts.comments = "made by <tests> & friends"
    page = pcgts.page
    page.orientation = -0.5
    page.attributes["type"] = "content"
    page.border = box(10, 10, 1230, 1744)
    page.print_space = box(90, 90, 1150, 1650)
    page.alternative_images.append(AlternativeImage("OCR-D-BIN/page_0001.png", "binarized"))
    page.text_style = TextStyle({"fontFamily": "Antiqua"})

    glyphs = [
        Glyph(f"g{n}", box(100 + 20 * n, 300, 118 + 20 * n, 340), [TextEquiv(char, 0.5 + n / 10)])
        for n, char in enumerate("Fox")
    ]
    word = Word(
        "w_fox",
        box(100, 300, 160, 340),
        glyphs,
        text_style=TextStyle({"bold": "true", "fontSize": "12.0"}),
        alternative_images=[AlternativeImage("OCR-D-DESKEW/w_fox.png", conf=0.8)],
        attributes={"language": "German", "custom": 'quote " and\nnewline'},
    )
    word.update_text()
    jumps = Word("w_jumps", box(200, 300, 280, 340), text_equivs=[TextEquiv("jumps", 0.9)])
    glyph_line = TextLine(
        "l_fox", box(100, 300, 300, 340), Baseline([(100, 335), (300, 335)]), [word, jumps]
    )
    glyph_line.update_text()

    body = TextRegion(
        "r_body",
        box(90, 200, 1150, 400),
        [sample_line("l_1", 200, ["The", "quick", "brown"]), glyph_line],
        type="paragraph",
        orientation=0.0,
        text_style=TextStyle({"italic": "true"}),
        alternative_images=[AlternativeImage("OCR-D-BIN/r_body.png")],
    )
    body.update_text()
    heading = TextRegion("r_head", box(90, 100, 800, 160), [sample_line("l_h", 100, ["Title"])])
    heading.text_equivs = [
        TextEquiv("Title", 0.99, index=1, plain_text="Title"),
        TextEquiv("Tit1e", 0.4, index=2),
    ]
    cell = TextRegion("r_cell", box(100, 500, 300, 550), [sample_line("l_c", 500, ["cell"])])
    table = OtherRegion(
        "TableRegion",
        "r_table",
        box(90, 480, 1150, 700),
        [cell],
        attributes={"rows": "1", "columns": "1"},
    )
    image = OtherRegion("ImageRegion", "r_image", box(90, 800, 600, 1200))
    separator = OtherRegion("SeparatorRegion", "r_sep", box(90, 1300, 1150, 1305))
    page.regions = [body, heading, table, image, separator]
    page.reading_order = ReadingOrder(
        ReadingOrderGroup(
            "ro_root",
            ["r_head", ReadingOrderGroup("ro_rest", ["r_body", "r_table"], ordered=False)],
            attributes={"caption": "Regions reading order"},
        )
    )
    return pcgts


def gt_files(shared_data: Path) -> list[Path]:
    files = sorted((shared_data / "bebel_frau_1879" / "GT-PAGE").glob("*.xml"))
    files += sorted(
        (shared_data / "kant_aufklaerung_1784" / "data" / "OCR-D-GT-PAGE").glob("*.xml")
    )
    assert files, f"no GT PAGE files under {shared_data}"
    return files


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def document_outline(data: bytes) -> list[tuple[str, dict[str, str], str]]:
    """Every element in document order: (local name, attributes, stripped leaf text).

    Read with plain lxml, independently of the model, so it can witness what was lost.
    """
    root = parse_xml(data).getroot()
    outline = []
    for element in root.iter():
        if not isinstance(element.tag, str):
            continue
        attributes = {
            key: value for key, value in element.attrib.items() if "XMLSchema-instance" not in key
        }
        text = (element.text or "").strip() if len(element) == 0 else ""
        outline.append((local(element.tag), attributes, text))
    return outline


# --- building and round trips ------------------------------------------------------------


def test_built_page_validates_and_parses_back_equal() -> None:
    pcgts = sample_pcgts()

    data = page_to_bytes(pcgts)

    assert validate_page(data) == []
    assert parse_page(data) == pcgts


def test_output_is_2019_utf8_with_declaration_and_plaintext_before_unicode() -> None:
    data = page_to_bytes(sample_pcgts())

    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8"?>\n')
    root = parse_xml(data).getroot()
    assert root.tag == f"{{{PAGE_NS_2019}}}PcGts"
    equiv = root.find(f".//{{{PAGE_NS_2019}}}TextEquiv[{{{PAGE_NS_2019}}}PlainText]")
    assert [local(child.tag) for child in equiv] == ["PlainText", "Unicode"]


def test_reading_order_groups_round_trip_and_flatten() -> None:
    data = page_to_bytes(sample_pcgts())
    page = parse_page(data).page

    assert page.reading_order is not None
    assert page.reading_order.region_ids() == ["r_head", "r_body", "r_table"]
    assert b'<UnorderedGroupIndexed id="ro_rest" index="1">' in data
    assert b'<RegionRef regionRef="r_body"/>' in data


def test_text_regions_in_order_follows_reading_order_then_document_order() -> None:
    page = sample_pcgts().page

    ordered = [region.id for region in page.text_regions_in_order()]

    # r_cell is nested in r_table and follows it; nothing is left out or repeated.
    assert ordered == ["r_head", "r_body", "r_cell"]
    page.reading_order = ReadingOrder.from_region_ids(["r_cell"])
    assert [region.id for region in page.text_regions_in_order()] == [
        "r_cell",
        "r_body",
        "r_head",
    ]


def test_page_without_reading_order_uses_document_order() -> None:
    page = sample_pcgts().page
    page.reading_order = None

    assert [region.id for region in page.text_regions_in_order()] == ["r_body", "r_head", "r_cell"]


def test_empty_reading_order_is_left_out_so_the_output_stays_valid() -> None:
    pcgts = sample_pcgts()
    pcgts.page.reading_order = ReadingOrder(ReadingOrderGroup("ro_empty"))

    data = page_to_bytes(pcgts)

    assert b"ReadingOrder" not in data
    assert validate_page(data) == []


def test_save_page_writes_a_file_that_parses(tmp_path: Path) -> None:
    pcgts = sample_pcgts()
    target = tmp_path / "OCR-D-OCR" / "page.xml"

    save_page(pcgts, target)

    assert parse_page(target) == pcgts


def test_special_characters_survive_in_text_and_attributes() -> None:
    pcgts = sample_pcgts()
    line = pcgts.page.text_regions()[0].lines[0]
    line.words[0].set_text('a<b & "c"\r\n\td')
    line.attributes["custom"] = "x<y & 'z' \"w\"\t\n"

    data = page_to_bytes(pcgts)
    again = parse_page(data).page.text_regions()[0].lines[0]

    assert validate_page(data) == []
    assert again.words[0].text == 'a<b & "c"\r\n\td'
    assert again.attributes["custom"] == "x<y & 'z' \"w\"\t\n"


def test_characters_xml_cannot_carry_are_refused_on_write() -> None:
    pcgts = sample_pcgts()
    pcgts.page.text_regions()[0].lines[0].words[0].set_text("bad\x00byte")

    with pytest.raises(PageXmlError, match="U\\+0000"):
        page_to_bytes(pcgts)


def test_unmodelled_content_is_kept_at_its_schema_position() -> None:
    xml = f'<UserDefined xmlns="{PAGE_NS_2013}"><UserAttribute name="k" value="v"/></UserDefined>'
    user_defined = RawElement.from_element(parse_xml(xml.encode()).getroot())
    pcgts = sample_pcgts()
    region = pcgts.page.text_regions()[0]
    region.extras.append(user_defined)

    data = page_to_bytes(pcgts)

    assert validate_page(data) == []
    assert user_defined.name == "UserDefined"
    assert PAGE_NS_2013.encode() not in data
    again = parse_page(data).page.text_regions()[0]
    assert again.extras == [user_defined]


# --- coordinates --------------------------------------------------------------------------


def test_coords_bbox_and_from_bbox() -> None:
    coords = Coords([(5, 9), (20, 3), (12, 30)])

    assert coords.bbox == (5, 3, 20, 30)
    assert Coords.from_bbox((1, 2, 3, 4)).points == [(1, 2), (3, 2), (3, 4), (1, 4)]


def test_points_read_from_a_file_are_written_back_and_follow_edits() -> None:
    data = page_to_bytes(sample_pcgts())
    pcgts = parse_page(data)
    line = pcgts.page.text_regions()[0].lines[0]

    line.coords.points.append((150, 260))
    line.coords.points[0] = (99, 199)
    again = parse_page(page_to_bytes(pcgts)).page.text_regions()[0].lines[0]

    assert again.coords.points == [(99, 199), (400, 200), (400, 240), (100, 240), (150, 260)]


def test_irregular_points_are_normalised() -> None:
    document = minimal_page(
        PAGE_NS_2019, region='<Coords points=" 1.6,2  30,4.4\n 30,40 "/>'
    ).encode()

    pcgts = parse_page(document)

    assert pcgts.page.text_regions()[0].coords.points == [(2, 2), (30, 4), (30, 40)]
    assert b'points="2,2 30,4 30,40"' in page_to_bytes(pcgts)


# --- text consistency ---------------------------------------------------------------------


def test_text_falls_back_to_the_children_by_the_consistency_rule() -> None:
    line = TextLine(
        "l",
        box(0, 0, 10, 10),
        words=[
            Word("w1", box(0, 0, 5, 10), [Glyph("g1", box(0, 0, 2, 10), [TextEquiv("a")])]),
            Word("w2", box(5, 0, 10, 10), text_equivs=[TextEquiv("bc")]),
        ],
    )
    region = TextRegion("r", box(0, 0, 10, 20), [line, TextLine("l2", box(0, 10, 10, 20))])

    assert line.text == "a bc"
    assert region.text == "a bc\n"


def test_update_text_joins_children_and_averages_confidence() -> None:
    pcgts = sample_pcgts()
    body = pcgts.page.text_regions()[0]
    body.lines[0].words[1].set_text("slow", 0.5)

    set_text_consistently(pcgts.page)

    assert body.lines[0].text == "The slow brown"
    assert body.lines[0].conf == pytest.approx((0.9 + 0.5 + 0.9) / 3)
    assert body.text == "The slow brown\nFox jumps"
    assert body.lines[1].words[0].text == "Fox"
    assert body.lines[1].words[0].conf == pytest.approx((0.5 + 0.6 + 0.7) / 3)


def test_confidence_is_unknown_when_a_child_has_none() -> None:
    line = TextLine(
        "l",
        box(0, 0, 10, 10),
        words=[
            Word("w1", box(0, 0, 5, 10), text_equivs=[TextEquiv("a", 0.9)]),
            Word("w2", box(5, 0, 10, 10), text_equivs=[TextEquiv("b")]),
        ],
    )

    line.update_text()

    assert (line.text, line.conf) == ("a b", None)


def test_inconsistencies_are_reported_and_fixed() -> None:
    pcgts = sample_pcgts()
    line = pcgts.page.text_regions()[0].lines[0]
    line.set_text("The quick  brown")
    assert text_inconsistencies(pcgts.page) == [
        "TextRegion r_body: 'The quick brown\\nFox jumps' but children give "
        "'The quick  brown\\nFox jumps'",
        "TextLine l_1: 'The quick  brown' but children give 'The quick brown'",
    ]

    set_text_consistently(pcgts.page)

    assert text_inconsistencies(pcgts.page) == []


def test_a_line_read_whole_over_unread_words_is_consistent() -> None:
    line = TextLine(
        "l",
        box(0, 0, 10, 10),
        words=[Word("w1", box(0, 0, 5, 10)), Word("w2", box(5, 0, 10, 10))],
        text_equivs=[TextEquiv("read as a line")],
    )
    region = TextRegion("r", box(0, 0, 10, 20), [line], text_equivs=[TextEquiv("read as a line")])
    page = PcGts.new("img.png", 10, 20).page
    page.regions.append(region)
    assert text_inconsistencies(page) == []
    line.words[0].set_text("other")
    assert text_inconsistencies(page) != []


# --- older namespaces ---------------------------------------------------------------------


def minimal_page(namespace: str, *, region: str = "", page_extra: str = "") -> str:
    coords = region or '<Coords points="0,0 100,0 100,50 0,50"/>'
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<PcGts xmlns="{namespace}" pcGtsId="old">
  <Metadata>
    <Creator>old tool</Creator>
    <Created>2015-01-01T00:00:00</Created>
    <LastChange>2015-01-02T00:00:00</LastChange>
    <UserDefined><UserAttribute name="tool" value="x"/></UserDefined>
  </Metadata>
  <Page imageFilename="scan.tif" imageWidth="200" imageHeight="300">
    {page_extra}
    <TextRegion id="r1" type="paragraph" readingDirection="left-to-right">
      {coords}
      <TextLine id="l1">
        <Coords points="0,0 100,0 100,20 0,20"/>
        <Word id="w1"><Coords points="0,0 40,0 40,20 0,20"/>
          <TextEquiv conf="0.75"><Unicode>Hello</Unicode></TextEquiv></Word>
        <TextEquiv><Unicode>Hello</Unicode></TextEquiv>
      </TextLine>
    </TextRegion>
  </Page>
</PcGts>"""


@pytest.mark.parametrize("namespace", [PAGE_NS_2013, PAGE_NS_2017, PAGE_NS_2019])
def test_reads_every_namespace_and_writes_2019(namespace: str) -> None:
    old = minimal_page(
        namespace,
        page_extra="""
    <ReadingOrder><OrderedGroup id="ro"><RegionRefIndexed index="0" regionRef="r1"/>
      </OrderedGroup></ReadingOrder>
    <ImageRegion id="i1" colourDepth="colour"><Coords points="0,100 50,100 50,150 0,150"/>
      </ImageRegion>""",
    ).encode()

    pcgts = parse_page(old)
    data = page_to_bytes(pcgts)

    assert pcgts.creator == "old tool"
    word = pcgts.page.text_regions()[0].lines[0].words[0]
    assert (word.id, word.text, word.conf) == ("w1", "Hello", 0.75)
    assert [region.id for region in pcgts.page.regions] == ["i1", "r1"]
    assert pcgts.page.regions[1].attributes == {"readingDirection": "left-to-right"}
    assert validate_page(data) == []
    assert namespace == PAGE_NS_2019 or namespace.encode() not in data
    assert document_outline(data) == document_outline(old)


# --- the real ground truth ------------------------------------------------------------------


def test_real_gt_round_trips_completely(shared_data: Path) -> None:
    for path in gt_files(shared_data):
        original = path.read_bytes()

        written = page_to_bytes(parse_page(path))

        assert validate_page(written) == [], path
        # Same elements in the same order with the same attributes and texts: every
        # region, line, word, coordinate and text, and everything unmodelled too.
        assert document_outline(written) == document_outline(original), path
        assert parse_page(written) == parse_page(original), path


def test_real_gt_text_matches_the_files(shared_data: Path) -> None:
    for path in gt_files(shared_data):
        root = parse_xml(path).getroot()
        ns = {"pc": root.tag[1:].partition("}")[0]}
        expected = {
            line.get("id"): line.findtext("pc:TextEquiv/pc:Unicode", namespaces=ns)
            for line in root.iterfind(".//pc:TextLine", ns)
        }

        page = parse_page(path).page

        lines = {line.id: line.text for region in page.text_regions() for line in region.lines}
        assert lines == expected, path


def test_kant_gt_inconsistencies_are_found_and_repaired(shared_data: Path) -> None:
    path = shared_data / "kant_aufklaerung_1784/data/OCR-D-GT-PAGE/PAGE_0017_PAGE.xml"
    page = parse_page(path).page

    problems = text_inconsistencies(page)
    set_text_consistently(page)

    assert "TextLine tl_1: 'Berliniſche Monatsſchrift.' but children give " in problems[0]
    assert text_inconsistencies(page) == []
    assert page.text_regions()[0].lines[0].text == "Berliniſche Monatsſchrift ."


# --- errors -------------------------------------------------------------------------------


def test_not_xml_is_a_page_error() -> None:
    with pytest.raises(PageXmlError, match="not well-formed"):
        parse_page(b"<PcGts><Page>")


def test_doctype_and_entities_are_refused_as_unsafe() -> None:
    hostile = (
        b'<?xml version="1.0"?><!DOCTYPE PcGts [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        + minimal_page(PAGE_NS_2019).split("?>", 1)[1].encode().replace(b"Hello", b"&x;", 1)
    )

    with pytest.raises(UnsafeInputError):
        parse_page(hostile)


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            '<mets xmlns="http://www.loc.gov/METS/"/>',
            "root element is {http://www.loc.gov/METS/}mets",
        ),
        ("<PcGts/>", "root element is PcGts"),
        (f'<PcGts xmlns="{PAGE_NS_2019}"><Metadata/></PcGts>', "has no Page"),
    ],
)
def test_documents_that_are_not_page_are_refused(document: str, message: str) -> None:
    with pytest.raises(PageXmlError, match=message.replace("{", r"\{").replace("}", r"\}")):
        parse_page(document.encode())


@pytest.mark.parametrize(
    ("original", "replacement", "message"),
    [
        ('imageWidth="200"', "", "Page has no @imageWidth"),
        ('imageWidth="200"', 'imageWidth="wide"', "imageWidth is not an integer: 'wide'"),
        ('<TextLine id="l1">', "<TextLine>", "TextLine has no @id"),
        ('<Coords points="0,0 40,0 40,20 0,20"/>', "", "Word w1 has no Coords"),
        ('points="0,0 40,0 40,20 0,20"', 'points="0,0 40"', "malformed points"),
        ('points="0,0 40,0 40,20 0,20"', 'points="a,b"', "malformed points"),
        ('conf="0.75"', 'conf="75"', "TextEquiv confidence 75 is outside 0–1"),
        ('conf="0.75"', 'conf="high"', "TextEquiv @conf is not a number"),
    ],
)
def test_malformed_page_errors_name_the_element_and_line(
    original: str, replacement: str, message: str
) -> None:
    document = minimal_page(PAGE_NS_2019).replace(original, replacement, 1)

    with pytest.raises(PageXmlError, match=r"PAGE-XML document, line \d+: ") as caught:
        parse_page(document.encode())

    assert message in str(caught.value)


def test_model_refuses_impossible_values() -> None:
    with pytest.raises(PageXmlError, match="outside 0–1"):
        TextEquiv("x", conf=1.5)
    with pytest.raises(PageXmlError, match="outside 0–1"):
        TextEquiv("x", conf=float("nan"))
    with pytest.raises(PageXmlError, match="at least one point"):
        Coords([])
    with pytest.raises(PageXmlError, match="unknown PAGE region kind"):
        OtherRegion("PictureRegion", "r", box(0, 0, 1, 1))


def test_validate_page_reports_schema_errors_with_lines() -> None:
    invalid = minimal_page(PAGE_NS_2019).replace('<TextLine id="l1">', '<TextLine id="l1" x="1">')
    line = next(n for n, text in enumerate(invalid.splitlines(), 1) if 'x="1"' in text)

    errors = validate_page(invalid.encode())

    assert len(errors) == 1
    assert errors[0].startswith(f"line {line}: ")
    assert "attribute 'x' is not allowed" in errors[0]


def test_unique_id_avoids_ids_in_use() -> None:
    used = {"a", "a_2"}

    assert [unique_id("a", used), unique_id("a", used), unique_id("b", used)] == ["a_3", "a_4", "b"]
    assert {"a_3", "a_4", "b"} <= used


def test_page_ids_cover_every_level() -> None:
    ids = sample_pcgts().page.ids()

    assert {"r_body", "r_cell", "r_image", "l_1", "l_1_w0", "w_fox", "g0"} <= ids
