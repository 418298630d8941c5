"""ALTO v4 from PAGE, for viewers and repositories that want ALTO (DFG-Viewer, Goobi, …).

Blocks come in reading order. Boxes are the bounding boxes of the PAGE polygons, and the
polygon itself goes into a Shape when it is not a rectangle. A line without Word elements
is split on whitespace and each String gets a share of the line box proportional to its
characters: an estimate, but one that lets viewers highlight words.
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from ocrswarm.formats.page import (
    XSI_NS,
    BBox,
    Coords,
    OtherRegion,
    PcGts,
    TextLine,
    TextRegion,
    TextStyle,
    unique_id,
)

ALTO_NS = "http://www.loc.gov/standards/alto/ns-v4#"
ALTO_SCHEMA_LOCATION = f"{ALTO_NS} http://www.loc.gov/alto/v4/alto-4-2.xsd"

# PAGE TextStyle flags → ALTO fontStylesType values.
_FONT_STYLES = {
    "bold": "bold",
    "italic": "italics",
    "subscript": "subscript",
    "superscript": "superscript",
    "smallCaps": "smallcaps",
    "underlined": "underline",
}
_ILLUSTRATION_KINDS = frozenset(
    {
        "ImageRegion",
        "GraphicRegion",
        "LineDrawingRegion",
        "ChartRegion",
        "MapRegion",
        "MathsRegion",
        "ChemRegion",
        "MusicRegion",
    }
)


def _sub(parent: Any, name: str, attributes: dict[str, str] | None = None) -> Any:
    return etree.SubElement(parent, f"{{{ALTO_NS}}}{name}", attributes)


def _box(bbox: BBox) -> dict[str, str]:
    x0, y0, x1, y1 = bbox
    return {"HPOS": str(x0), "VPOS": str(y0), "WIDTH": str(x1 - x0), "HEIGHT": str(y1 - y0)}


def _confidence(conf: float) -> str:
    return f"{conf:.4f}".rstrip("0").rstrip(".")


def _shape(parent: Any, coords: Coords) -> None:
    """A Polygon Shape when the outline is more than its bounding box."""
    x0, y0, x1, y1 = coords.bbox
    if set(coords.points) != {(x0, y0), (x1, y0), (x1, y1), (x0, y1)}:
        _sub(_sub(parent, "Shape"), "Polygon", {"POINTS": coords.points_text()})


def _style(*styles: TextStyle | None) -> str | None:
    """ALTO STYLE from the innermost TextStyle present (word, then line, then region)."""
    for style in styles:
        if style is not None:
            names = [alto for page, alto in _FONT_STYLES.items() if style.flag(page)]
            return " ".join(names) or None
    return None


def _strings(
    line: TextLine, box: BBox, ids: set[str], region_style: TextStyle | None
) -> list[tuple[str, str, BBox, float | None, str | None]]:
    """(ID, CONTENT, box, confidence, STYLE) for each String of a line."""
    words = [word for word in line.words if word.text]
    if words:
        return [
            (
                word.id,
                word.text,
                word.coords.bbox,
                word.conf,
                _style(word.text_style, line.text_style, region_style),
            )
            for word in words
        ]
    tokens = line.text.split()
    joined = " ".join(tokens)
    x0, y0, x1, y1 = box
    width = x1 - x0
    strings = []
    start = 0
    for token in tokens:
        end = start + len(token)
        token_box = (
            x0 + round(width * start / len(joined)),
            y0,
            x0 + round(width * end / len(joined)),
            y1,
        )
        style = _style(line.text_style, region_style)
        strings.append((unique_id(f"{line.id}_string", ids), token, token_box, line.conf, style))
        start = end + 1
    return strings


def _write_line(
    block: Any, line: TextLine, box: BBox, ids: set[str], region_style: TextStyle | None
) -> None:
    strings = _strings(line, box, ids, region_style)
    if not strings:  # ALTO wants at least one String per TextLine
        return
    attributes = {"ID": line.id, **_box(box)}
    if line.baseline is not None:
        # One number (the mean height) reads as ALTO ≤4.1 float and as 4.2+ points alike.
        ys = [y for _, y in line.baseline.points]
        attributes["BASELINE"] = str(round(sum(ys) / len(ys)))
    element = _sub(block, "TextLine", attributes)
    _shape(element, line.coords)
    previous_end: int | None = None
    for string_id, content, string_box, conf, style in strings:
        if previous_end is not None:
            gap = string_box[0] - previous_end
            space = _sub(element, "SP")
            if gap > 0:
                space.attrib.update(
                    {"HPOS": str(previous_end), "VPOS": str(string_box[1]), "WIDTH": str(gap)}
                )
        string = _sub(element, "String", {"ID": string_id, "CONTENT": content, **_box(string_box)})
        if conf is not None:
            string.set("WC", _confidence(conf))
        if style is not None:
            string.set("STYLE", style)
        previous_end = string_box[2]


def page_to_alto(pcgts: PcGts, *, file_name: str | None = None) -> bytes:
    """ALTO v4 (pixel units) for the page; `file_name` overrides the image name it cites."""
    page = pcgts.page
    ids = page.ids()

    root = etree.Element(f"{{{ALTO_NS}}}alto", nsmap={None: ALTO_NS, "xsi": XSI_NS})
    root.set(f"{{{XSI_NS}}}schemaLocation", ALTO_SCHEMA_LOCATION)
    description = _sub(root, "Description")
    _sub(description, "MeasurementUnit").text = "pixel"
    source = _sub(description, "sourceImageInformation")
    _sub(source, "fileName").text = file_name or page.image_filename
    layout = _sub(root, "Layout")
    alto_page = _sub(
        layout,
        "Page",
        {
            "ID": unique_id("page", ids),
            "PHYSICAL_IMG_NR": "1",
            "WIDTH": str(page.image_width),
            "HEIGHT": str(page.image_height),
        },
    )
    print_space = page.print_space or page.border
    space_box = print_space.bbox if print_space else (0, 0, page.image_width, page.image_height)
    space = _sub(alto_page, "PrintSpace", {"ID": unique_id("printspace", ids), **_box(space_box)})

    for region in page.text_regions_in_order():
        block = _sub(space, "TextBlock", {"ID": region.id, **_box(region.coords.bbox)})
        _shape(block, region.coords)
        if region.lines:
            for line in region.lines:
                _write_line(block, line, line.coords.bbox, ids, region.text_style)
        elif region.text and not any(isinstance(child, TextRegion) for child in region.regions):
            # Text known only at region level: one line over the whole region.
            pseudo_line = TextLine(unique_id(f"{region.id}_line", ids), region.coords)
            pseudo_line.text_equivs = list(region.text_equivs)
            _write_line(block, pseudo_line, region.coords.bbox, ids, region.text_style)
    for other in page.all_regions():
        if isinstance(other, OtherRegion):
            if other.kind in _ILLUSTRATION_KINDS:
                illustration = _sub(space, "Illustration", {"ID": other.id, "TYPE": other.kind})
                illustration.attrib.update(_box(other.coords.bbox))
                _shape(illustration, other.coords)
            elif other.kind == "SeparatorRegion":
                separator = _sub(space, "GraphicalElement", {"ID": other.id})
                separator.attrib.update(_box(other.coords.bbox))
                _shape(separator, other.coords)

    etree.indent(root, space="  ")
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + bytes(
        etree.tostring(root, encoding="UTF-8")
    )
