"""hOCR from PAGE: XHTML with the layout in `title` properties, for hOCR tools and browsers.

ocr_page › ocr_carea (one per text region, in reading order) › ocr_par › ocr_line ›
ocrx_word. A line without Word elements carries its text directly. The document is
well-formed XML without a DOCTYPE (so it passes our own hostile-XML guard).
"""

from __future__ import annotations

from typing import Any

from lxml import etree

from ocrswarm.formats.page import BBox, Coords, PcGts, TextLine, TextRegion, unique_id

XHTML_NS = "http://www.w3.org/1999/xhtml"
CAPABILITIES = "ocr_page ocr_carea ocr_par ocr_line ocrx_word ocrp_wconf"


def _sub(parent: Any, name: str, attributes: dict[str, str] | None = None) -> Any:
    element = etree.SubElement(parent, f"{{{XHTML_NS}}}{name}", attributes)
    return element


def _bbox(bbox: BBox) -> str:
    return "bbox {} {} {} {}".format(*bbox)


def _quoted(text: str) -> str:
    """An hOCR string property value: double quotes, backslash escapes."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _baseline(line: TextLine, box: BBox) -> str | None:
    """hOCR `baseline slope offset`: offset from the box's bottom-left corner at its left edge."""
    if line.baseline is None or len(line.baseline.points) < 2:
        return None
    (first_x, first_y), (last_x, last_y) = line.baseline.points[0], line.baseline.points[-1]
    slope = (last_y - first_y) / (last_x - first_x) if last_x != first_x else 0.0
    offset = first_y + slope * (box[0] - first_x) - box[3]
    return f"baseline {round(slope, 5):g} {round(offset)}"


def _write_line(paragraph: Any, line: TextLine, coords: Coords) -> None:
    box = coords.bbox
    properties = [_bbox(box)]
    baseline = _baseline(line, box)
    if baseline:
        properties.append(baseline)
    element = _sub(paragraph, "span", {"class": "ocr_line", "id": line.id})
    element.set("title", "; ".join(properties))
    element.tail = "\n"
    words = [word for word in line.words if word.text]
    if not words:
        element.text = line.text
        return
    for number, word in enumerate(words):
        title = _bbox(word.coords.bbox)
        if word.conf is not None:
            title += f"; x_wconf {round(word.conf * 100)}"
        span = _sub(element, "span", {"class": "ocrx_word", "id": word.id, "title": title})
        span.text = word.text
        if number < len(words) - 1:
            span.tail = " "


def _write_region(page: Any, region: TextRegion, ids: set[str]) -> None:
    lines = [line for line in region.lines if line.text]
    if not lines:
        if not region.text or any(isinstance(child, TextRegion) for child in region.regions):
            return
        # Text known only at region level: one line over the whole region.
        line = TextLine(unique_id(f"{region.id}_line", ids), region.coords)
        line.text_equivs = list(region.text_equivs)
        lines = [line]
    box = _bbox(region.coords.bbox)
    area = _sub(page, "div", {"class": "ocr_carea", "id": region.id, "title": box})
    area.text = area.tail = "\n"
    paragraph = _sub(area, "p", {"class": "ocr_par", "id": unique_id(f"{region.id}_par", ids)})
    paragraph.set("title", box)
    paragraph.text = paragraph.tail = "\n"
    for line in lines:
        _write_line(paragraph, line, line.coords)


def page_to_hocr(pcgts: PcGts, *, title: str | None = None) -> bytes:
    """hOCR 1.2 for the page; `title` defaults to the image file name."""
    page = pcgts.page
    ids = page.ids()

    html = etree.Element(f"{{{XHTML_NS}}}html", nsmap={None: XHTML_NS})
    head = _sub(html, "head")
    _sub(head, "title").text = title if title is not None else page.image_filename
    _sub(head, "meta", {"http-equiv": "Content-Type", "content": "text/html; charset=utf-8"})
    _sub(head, "meta", {"name": "ocr-system", "content": "ocrswarm"})
    _sub(head, "meta", {"name": "ocr-capabilities", "content": CAPABILITIES})
    body = _sub(html, "body")
    properties = [
        f"image {_quoted(page.image_filename)}",
        _bbox((0, 0, page.image_width, page.image_height)),
        "ppageno 0",
    ]
    page_div = _sub(body, "div", {"class": "ocr_page", "id": unique_id("page_1", ids)})
    page_div.set("title", "; ".join(properties))
    page_div.text = "\n"
    for region in page.text_regions_in_order():
        _write_region(page_div, region, ids)
    head.text = body.text = html.text = "\n"
    for element in (*head, head, body, page_div):
        element.tail = "\n"
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + bytes(
        etree.tostring(html, encoding="UTF-8")
    )
