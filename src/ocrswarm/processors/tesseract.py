"""Tesseract in-process: one initialised API per processor, images in, PAGE segments out.

Loading a model costs more than recognising a small page, so a processor creates one
`Tesseract` in its constructor and keeps it for every page (the `tesseract` command pays the
load on every call). `Tesseract.read` runs layout analysis, or recognition, on one image
and returns plain `Segment` trees in that image's pixels; `PageBuilder` turns them into PAGE
elements in the page's coordinates. Both know nothing about workspaces or files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import tesserocr  # type: ignore[import-untyped]
from PIL import Image

from ocrswarm.errors import OcrswarmError
from ocrswarm.formats.page import (
    Baseline,
    BBox,
    Coords,
    Glyph,
    OtherRegion,
    Point,
    ReadingOrder,
    ReadingOrderGroup,
    Region,
    TextEquiv,
    TextLine,
    TextRegion,
    Word,
    unique_id,
)
from ocrswarm.processors.tessdata import find_model

# Maps points in the pixels of the image Tesseract saw to points in the page's coordinates.
PointMap = Callable[[Sequence[tuple[float, float]]], list[Point]]
Variables = Mapping[str, str | int | float | bool]


class Level(IntEnum):
    """The PAGE hierarchy levels Tesseract segments, from the top down."""

    REGION = 0
    LINE = 1
    WORD = 2
    GLYPH = 3

    @classmethod
    def named(cls, name: str) -> Level:
        """The level of a parameter value: "region", "line", "word" or "glyph"."""
        return cls[name.upper()]


_RIL = {
    Level.REGION: tesserocr.RIL.BLOCK,
    Level.LINE: tesserocr.RIL.TEXTLINE,
    Level.WORD: tesserocr.RIL.WORD,
    Level.GLYPH: tesserocr.RIL.SYMBOL,
}
_PT = tesserocr.PT
# Tesseract block types holding text -> PAGE TextRegion @type.
TEXT_BLOCK_TYPES: dict[int | None, str] = {
    _PT.UNKNOWN: "other",
    _PT.FLOWING_TEXT: "paragraph",
    _PT.HEADING_TEXT: "heading",
    _PT.PULLOUT_TEXT: "floating",
    _PT.INLINE_EQUATION: "paragraph",
    _PT.VERTICAL_TEXT: "paragraph",
    _PT.CAPTION_TEXT: "caption",
}
# Other block types -> PAGE region element. Tables hold text: their paragraphs become cells.
OTHER_BLOCK_KINDS: dict[int | None, str] = {
    _PT.EQUATION: "MathsRegion",
    _PT.TABLE: "TableRegion",
    _PT.FLOWING_IMAGE: "ImageRegion",
    _PT.HEADING_IMAGE: "ImageRegion",
    _PT.PULLOUT_IMAGE: "ImageRegion",
    _PT.HORZ_LINE: "SeparatorRegion",
    _PT.VERT_LINE: "SeparatorRegion",
    _PT.NOISE: "NoiseRegion",
}
OEM_NAMES: dict[str, int] = {
    "DEFAULT": tesserocr.OEM.DEFAULT,
    "LSTM_ONLY": tesserocr.OEM.LSTM_ONLY,
    "TESSERACT_ONLY": tesserocr.OEM.TESSERACT_ONLY,
    "TESSERACT_LSTM_COMBINED": tesserocr.OEM.TESSERACT_LSTM_COMBINED,
}
# Page segmentation modes for a segment already known to be one block of text, or one line.
SINGLE_BLOCK = tesserocr.PSM.SINGLE_BLOCK
SINGLE_LINE = tesserocr.PSM.SINGLE_LINE
# Tesseract cannot read an image narrower or lower than this many pixels.
MIN_IMAGE_SIZE = 3


class TesseractError(OcrswarmError):
    """Tesseract could not be set up: a model that does not load, unknown variables."""


@dataclass(slots=True)
class Segment:
    """One block, paragraph cell, line, word or glyph Tesseract found, in image pixels.

    `box` is (x0, y0, x1, y1) with x1, y1 exclusive. `text` and `conf` (0–1) are set only
    when Tesseract recognised text; `block_type` only on blocks (a tesserocr.PT value).
    """

    box: BBox
    children: list[Segment] = field(default_factory=list)
    text: str = ""
    conf: float | None = None
    baseline: tuple[Point, Point] | None = None
    block_type: int | None = None

    @property
    def is_text_block(self) -> bool:
        return self.block_type in TEXT_BLOCK_TYPES

    @property
    def region_kind(self) -> str:
        """The PAGE element a block becomes (TextRegion, ImageRegion, TableRegion…)."""
        if self.is_text_block:
            return "TextRegion"
        return OTHER_BLOCK_KINDS.get(self.block_type, "UnknownRegion")

    def leaf_boxes(self) -> list[BBox]:
        """The boxes at the bottom of this tree (its glyphs, when they were collected)."""
        if not self.children:
            return [self.box]
        return [box for child in self.children for box in child.leaf_boxes()]


class Tesseract:
    """One Tesseract API, initialised once with a model (or for layout analysis only)."""

    def __init__(
        self, model: str | None, *, oem: str = "DEFAULT", variables: Variables | None = None
    ) -> None:
        """Load `model` (see tessdata.find_model; None: layout analysis, no recognition).

        Raises ModelNotFoundError for a model that is not installed, TesseractError for one
        that does not load or for variables Tesseract does not know.
        """
        self.model = model
        self.variables = {name: _variable_text(value) for name, value in (variables or {}).items()}
        self._api = tesserocr.PyTessBaseAPI(init=False)
        try:
            if model is None:
                self._api.InitForAnalysePage()
                self.languages: list[str] = []
            else:
                directory, self.languages = find_model(model)
                self._init(str(directory), "+".join(self.languages), OEM_NAMES[oem])
            self._check_variables()
        except BaseException:
            self._api.End()
            raise

    def _init(self, directory: str, languages: str, oem: int) -> None:
        try:
            # Init takes variables that can only be set at initialisation (load_*_dawg…).
            self._api.InitFull(
                path=directory.rstrip("/") + "/", lang=languages, oem=oem, variables=self.variables
            )
        except RuntimeError:
            raise TesseractError(
                f"Tesseract could not load model {self.model!r} ({languages} from {directory}): "
                "the file is damaged, or the engine mode (oem) needs a part it lacks"
            ) from None

    def _check_variables(self) -> None:
        unknown = [name for name in self.variables if self._api.GetVariableAsString(name) is None]
        if unknown:
            raise TesseractError(
                f"tesseract_parameters: Tesseract has no variable {', '.join(map(repr, unknown))} "
                "(`tesseract --print-parameters` lists them)"
            )

    def read(
        self, image: Image.Image, *, dpi: float, psm: int, depth: Level, recognize: bool
    ) -> list[Segment]:
        """The blocks Tesseract finds in `image`, each down to `depth`.

        With `recognize` the segments carry text and confidence; without it this is layout
        analysis only, several times faster. Glyphs are collected whenever `depth` is
        GLYPH. An image too small for Tesseract yields no blocks.
        """
        if min(image.size) < MIN_IMAGE_SIZE:
            return []
        api = self._api
        # Some textord variables are process-wide: apply ours again for every image.
        for name, value in self.variables.items():
            api.SetVariable(name, value)
        api.SetPageSegMode(psm)
        api.SetImage(image)
        api.SetSourceResolution(max(1, round(dpi)))
        if recognize:
            api.Recognize()
            iterator = api.GetIterator()
        else:
            iterator = api.AnalyseLayout()
        if iterator is None:
            return []
        return _walk(iterator, depth, recognize)

    def close(self) -> None:
        """Free the model; the object cannot read afterwards."""
        self._api.End()


def _variable_text(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _walk(iterator: Any, depth: Level, recognize: bool) -> list[Segment]:
    """Read the iterator once, front to back, into block → line → word → glyph trees.

    Tesseract's own renderers walk the same way: step at the deepest level wanted and open
    a new segment wherever the iterator is at the beginning of one. Lines are always read
    (a block's text is its lines' texts); table blocks get one cell per paragraph.
    """
    ril = tesserocr.RIL
    step = _RIL[max(depth, Level.LINE)]
    blocks: list[Segment] = []
    container: Segment | None = None
    line: Segment | None = None
    word: Segment | None = None
    while not iterator.Empty(ril.BLOCK):
        if iterator.IsAtBeginningOf(ril.BLOCK):
            block = _segment(iterator, ril.BLOCK, recognize)
            block.block_type = iterator.BlockType()
            blocks.append(block)
            container = block
            if not block.is_text_block and block.block_type != _PT.TABLE:
                if not iterator.Next(ril.BLOCK):
                    break
                continue
        if iterator.Empty(ril.WORD):  # a pseudo-word of a block without text
            if not iterator.Next(ril.WORD):
                break
            continue
        block = blocks[-1]
        if block.block_type == _PT.TABLE and iterator.IsAtBeginningOf(ril.PARA):
            container = _segment(iterator, ril.PARA, recognize)
            container.block_type = _PT.FLOWING_TEXT
            block.children.append(container)
        if iterator.IsAtBeginningOf(ril.TEXTLINE):
            line = _segment(iterator, ril.TEXTLINE, recognize)
            line.baseline = iterator.Baseline(ril.TEXTLINE)
            assert container is not None
            container.children.append(line)
        if depth >= Level.WORD and iterator.IsAtBeginningOf(ril.WORD):
            word = _segment(iterator, ril.WORD, recognize)
            assert line is not None
            line.children.append(word)
        if depth >= Level.GLYPH:
            assert word is not None
            word.children.append(_segment(iterator, ril.SYMBOL, recognize))
        if not iterator.Next(step):
            break
    return [block for block in blocks if _keep(block, recognize)]


def _segment(iterator: Any, level: int, recognize: bool) -> Segment:
    box = iterator.BoundingBox(level) or (0, 0, 0, 0)
    if not recognize:
        return Segment(box)
    text = (iterator.GetUTF8Text(level) or "").strip()
    conf = min(1.0, max(0.0, iterator.Confidence(level) / 100.0))
    return Segment(box, text=text, conf=conf)


def _keep(segment: Segment, recognize: bool) -> bool:
    """Drop what recognition found no text in: empty words, lines, text blocks, table cells.

    Layout analysis has no text to judge by and keeps everything. Children are pruned first.
    """
    segment.children = [child for child in segment.children if _keep(child, recognize)]
    if not recognize:
        return True
    if segment.block_type is not None and not segment.is_text_block:
        return segment.block_type != _PT.TABLE or bool(segment.children)
    return bool(segment.children) if segment.block_type is not None else bool(segment.text)


# --- Tesseract's segments as PAGE ---------------------------------------------------------


@dataclass
class PageBuilder:
    """Builds PAGE elements from the segments of one image, down to `depth`, with fresh ids.

    `to_page` maps the image's pixels to the page's coordinates (imaging.PageImage's
    `to_original`, which also keeps points on the page). Every polygon is clipped to its
    parent's box in the image, so children lie inside their parents as OCR-D's validator
    demands. With `with_text`, the segments at `depth` get a TextEquiv (a region its lines'
    texts joined by newlines); joining the levels above is the caller's job.
    """

    to_page: PointMap
    used_ids: set[str]
    depth: Level
    with_text: bool
    padding: int = 0
    shrink_polygons: bool = False
    _numbers: dict[str, int] = field(default_factory=dict, init=False, repr=False)

    def regions(self, blocks: Sequence[Segment], clip: BBox) -> list[Region]:
        """One region per block: text regions, tables with their cells, the others bare."""
        regions: list[Region] = []
        for block in blocks:
            box = self._box(block, clip)
            if block.is_text_block:
                regions.append(self.text_region(block, box))
                continue
            region = OtherRegion(block.region_kind, self._id("region"), self._coords(block, box))
            if region.kind == "TableRegion":
                region.regions.extend(
                    self.text_region(cell, self._box(cell, box), f"{region.id}_cell")
                    for cell in block.children
                )
            regions.append(region)
        return regions

    def text_region(self, block: Segment, box: BBox, base: str = "region") -> TextRegion:
        region = TextRegion(
            self._id(base),
            self._coords(block, box),
            type=TEXT_BLOCK_TYPES.get(block.block_type),
        )
        if self.depth == Level.REGION:
            if self.with_text:
                text = "\n".join(line.text for line in block.children)
                region.text_equivs = [TextEquiv(text, block.conf)]
        else:
            region.lines = self.lines(block.children, box, region.id)
        return region

    def lines(self, segments: Sequence[Segment], clip: BBox, parent_id: str) -> list[TextLine]:
        lines = []
        for segment in segments:
            box = self._box(segment, clip)
            line = TextLine(self._id(f"{parent_id}_line"), self._coords(segment, box))
            if segment.baseline is not None:
                line.baseline = Baseline(self._to_page(list(segment.baseline), box))
            if self.depth == Level.LINE:
                self._text(line, segment)
            else:
                line.words = self.words(segment.children, box, line.id)
            lines.append(line)
        return lines

    def words(self, segments: Sequence[Segment], clip: BBox, parent_id: str) -> list[Word]:
        words = []
        for segment in segments:
            box = self._box(segment, clip)
            word = Word(self._id(f"{parent_id}_word"), self._coords(segment, box))
            if self.depth == Level.WORD:
                self._text(word, segment)
            else:
                word.glyphs = self.glyphs(segment.children, box, word.id)
            words.append(word)
        return words

    def glyphs(self, segments: Sequence[Segment], clip: BBox, parent_id: str) -> list[Glyph]:
        glyphs = []
        for segment in segments:
            box = self._box(segment, clip)
            glyph = Glyph(self._id(f"{parent_id}_glyph"), self._coords(segment, box))
            self._text(glyph, segment)
            glyphs.append(glyph)
        return glyphs

    def reading_order(self, regions: Sequence[Region]) -> ReadingOrder | None:
        """Tesseract's block order; a table is a group of its cells, in order."""
        if not regions:
            return None
        members: list[str | ReadingOrderGroup] = []
        for region in regions:
            if region.regions:
                cells: list[str | ReadingOrderGroup] = [cell.id for cell in region.regions]
                group_id = unique_id(f"{region.id}_order", self.used_ids)
                members.append(ReadingOrderGroup(group_id, cells, region_ref=region.id))
            else:
                members.append(region.id)
        return ReadingOrder(ReadingOrderGroup(unique_id("reading_order", self.used_ids), members))

    def _id(self, base: str) -> str:
        """`<base>_0001`, `<base>_0002`… for each base, made unique on the page."""
        number = self._numbers[base] = self._numbers.get(base, 0) + 1
        return unique_id(f"{base}_{number:04d}", self.used_ids)

    def _text(self, element: TextLine | Word | Glyph, segment: Segment) -> None:
        if self.with_text:
            element.text_equivs = [TextEquiv(segment.text, segment.conf)]

    def _box(self, segment: Segment, clip: BBox) -> BBox:
        """The segment's box, padded, within `clip` (its parent's box), in image pixels.

        At least two pixels each way: a one-pixel box would make a polygon without area,
        which PAGE validators (OCR-D's among them) reject.
        """
        x0, y0, x1, y1 = segment.box
        pad = self.padding
        left, top = max(x0 - pad, clip[0]), max(y0 - pad, clip[1])
        return (
            left,
            top,
            max(min(x1 + pad, clip[2]), left + 2),
            max(min(y1 + pad, clip[3]), top + 2),
        )

    def _coords(self, segment: Segment, box: BBox) -> Coords:
        outline = _corners(box)
        if self.shrink_polygons and segment.children:
            hull = convex_hull([point for leaf in segment.leaf_boxes() for point in _corners(leaf)])
            if len(hull) >= 3:
                outline = hull
        return Coords(self._to_page(outline, box))

    def _to_page(self, points: Sequence[Point], box: BBox) -> list[Point]:
        """Points kept on the pixels of `box` (x1, y1 exclusive), mapped to the page."""
        x0, y0, x1, y1 = box
        return self.to_page(
            [(float(min(max(x, x0), x1 - 1)), float(min(max(y, y0), y1 - 1))) for x, y in points]
        )


def _corners(box: BBox) -> list[Point]:
    """The outline of the pixels of a box whose x1, y1 are exclusive, clockwise."""
    x0, y0, x1, y1 = box
    right, bottom = max(x0, x1 - 1), max(y0, y1 - 1)
    return [(x0, y0), (right, y0), (right, bottom), (x0, bottom)]


def convex_hull(points: Sequence[Point]) -> list[Point]:
    """The convex hull (Andrew's monotone chain), without collinear points."""
    unique = sorted(set(points))
    if len(unique) <= 2:
        return unique

    def cross(o: Point, a: Point, b: Point) -> int:
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list[Point] = []
    upper: list[Point] = []
    for point in unique:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], point) <= 0:
            lower.pop()
        lower.append(point)
    for point in reversed(unique):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], point) <= 0:
            upper.pop()
        upper.append(point)
    return lower[:-1] + upper[:-1]
