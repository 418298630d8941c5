"""Plain text from PAGE: what a reader greps or diffs, in reading order."""

from __future__ import annotations

from ocrswarm.formats.page import PcGts, TextRegion


def region_lines(region: TextRegion) -> list[str]:
    """The region's lines as text, empty ones left out (they would read as paragraph breaks).

    A region without lines gives its own TextEquiv, unless it only groups nested text
    regions: those are exported as regions of their own.
    """
    if region.lines:
        return [text for text in (line.text for line in region.lines) if text]
    if any(isinstance(child, TextRegion) for child in region.regions):
        return []
    return [region.text] if region.text else []


def page_to_text(pcgts: PcGts) -> str:
    """Text regions in reading order: one line per TextLine, a blank line between regions.

    Ends with a newline unless the page has no text at all.
    """
    blocks = ["\n".join(lines) for lines in map(region_lines, pcgts.page.text_regions_in_order())]
    blocks = [block for block in blocks if block]
    return "\n\n".join(blocks) + "\n" if blocks else ""
