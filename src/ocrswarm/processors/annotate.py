"""Annotate a PAGE document with Tesseract's segments and text, reusing what it already has.

Shared by ocrd-swarm-segment (layout analysis only) and ocrd-swarm-recognize. A page without
text regions is segmented and recognised in one pass over the whole page image, exactly as
the `tesseract` command reads it. Where segments exist, each region or line is cut from the
page image and read on its own as one block or one line: missing levels below it are added,
existing ones are descended into. Existing words and glyphs are not read one by one (out of
their line's context Tesseract misreads them badly): their line is read and what it finds
is shared out among them by overlap.

Text ends up on the `depth` level; every level above gets its children's texts joined
(OCR-D's consistency rule). Where recognised text replaces an element's text, the texts of
its descendants are removed: they were read separately and no longer agree with it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ocrswarm.formats.page import (
    BBox,
    Glyph,
    Page,
    PcGts,
    Point,
    ReadingOrderGroup,
    TextEquiv,
    TextLine,
    TextRegion,
    Word,
)
from ocrswarm.processors.dummy import processing_step_item
from ocrswarm.processors.imaging import (
    PageImage,
    load_input_page,
    page_image,
    page_output,
    segment_image,
)
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.processor import OutputFile, PageJob, Processor
from ocrswarm.processors.tesseract import (
    SINGLE_BLOCK,
    SINGLE_LINE,
    Level,
    PageBuilder,
    Segment,
    Tesseract,
)

Element = TextRegion | TextLine | Word | Glyph
# How Tesseract is told what an existing segment is, and how the lines it reads are joined.
_PSM = {Level.REGION: SINGLE_BLOCK, Level.LINE: SINGLE_LINE}
_SEPARATOR = {Level.REGION: "\n", Level.LINE: " "}


@dataclass(frozen=True, slots=True)
class Settings:
    """What to annotate and how.

    `depth`: the lowest level to segment to and, with `recognize`, to put text on.
    `segment_from`: the highest level that may be segmented where the input has no segments
    (None: never segment). `psm`: Tesseract's page segmentation mode for whole pages.
    `box_padding` grows every new segment's box; `image_padding` adds margin around
    existing segments' images before Tesseract reads them.
    """

    depth: Level
    segment_from: Level | None
    recognize: bool
    psm: int
    overwrite_segments: bool = False
    overwrite_text: bool = True
    box_padding: int = 0
    image_padding: int = 0
    shrink_polygons: bool = False

    def may_segment(self, level: Level) -> bool:
        return self.segment_from is not None and self.segment_from <= level <= self.depth


class PageAnnotator:
    """Runs one Tesseract over pages as `settings` say; keeps nothing between pages."""

    def __init__(self, tesseract: Tesseract, settings: Settings) -> None:
        self.tesseract = tesseract
        self.settings = settings

    def annotate(self, pcgts: PcGts, image: PageImage) -> None:
        """Add segments and text to `pcgts` (in place), reading the pixels of `image`."""
        page = pcgts.page
        ids = page.ids() | _reading_order_ids(page)
        if self.settings.may_segment(Level.REGION) and (
            self.settings.overwrite_segments or not page.text_regions()
        ):
            self._segment_page(page, image, ids)
        else:
            for region in page.text_regions():
                self._region(region, image, ids)
        if self.settings.recognize:
            join_text_above(page, self.settings.depth)
        pcgts.touch()

    def _segment_page(self, page: Page, image: PageImage, ids: set[str]) -> None:
        blocks = self._read(image, self.settings.psm, self.settings.depth)
        builder = self._builder(image, ids)
        page.regions = builder.regions(blocks, (0, 0, *image.image.size))
        page.reading_order = builder.reading_order(page.regions)

    def _region(self, region: TextRegion, page_image: PageImage, ids: set[str]) -> None:
        settings = self.settings
        if settings.overwrite_segments and settings.may_segment(Level.LINE):
            region.lines = []
        if settings.depth == Level.REGION:
            self._recognize(region, Level.REGION, page_image)
        elif region.lines:
            for line in region.lines:
                self._line(line, page_image, ids)
        elif settings.may_segment(Level.LINE):
            image, blocks, clip = self._read_segment(region, Level.REGION, page_image)
            region.lines = self._builder(image, ids).lines(lines_of(blocks), clip, region.id)

    def _line(self, line: TextLine, page_image: PageImage, ids: set[str]) -> None:
        settings = self.settings
        if settings.overwrite_segments and settings.may_segment(Level.WORD):
            line.words = []
        if settings.depth == Level.LINE:
            self._recognize(line, Level.LINE, page_image)
            return
        if line.words and not settings.recognize:
            return  # layout analysis has nothing to add to existing words
        if not line.words and not settings.may_segment(Level.WORD):
            return  # no words to put text on, and none may be made
        image, blocks, clip = self._read_segment(line, Level.LINE, page_image)
        found = words_of(blocks)
        if not line.words:
            line.words = self._builder(image, ids).words(found, clip, line.id)
            return
        # Words read in their line's context, then shared out: far better than word by word.
        boxes = [_box_in(image, word.coords.points) for word in line.words]
        for word, box, share in zip(line.words, boxes, _share(found, boxes), strict=True):
            self._fill_word(word, box, share, image, ids)

    def _fill_word(
        self, word: Word, box: BBox, found: list[Segment], image: PageImage, ids: set[str]
    ) -> None:
        """Annotate an existing word with the words Tesseract read where it is."""
        settings = self.settings
        if settings.overwrite_segments and settings.may_segment(Level.GLYPH):
            word.glyphs = []
        if settings.depth == Level.WORD:
            self._set_text(word, " ".join(part.text for part in found), _mean_conf(found))
            return
        glyphs = [glyph for part in found for glyph in part.children]
        if word.glyphs:
            glyph_boxes = [_box_in(image, glyph.coords.points) for glyph in word.glyphs]
            for glyph, share in zip(word.glyphs, _share(glyphs, glyph_boxes), strict=True):
                self._set_text(glyph, "".join(part.text for part in share), _mean_conf(share))
        elif settings.may_segment(Level.GLYPH):
            word.glyphs = self._builder(image, ids).glyphs(glyphs, box, word.id)

    def _recognize(self, element: TextRegion | TextLine, level: Level, page: PageImage) -> None:
        """Read an existing region or line as a whole and put the text on it."""
        if not self.settings.recognize:
            return
        _, blocks, _ = self._read_segment(element, level, page, depth=Level.LINE)
        lines = lines_of(blocks)
        self._set_text(
            element, _SEPARATOR[level].join(line.text for line in lines), _mean_conf(lines)
        )

    def _set_text(self, element: Element, text: str, conf: float | None) -> None:
        if not self.settings.overwrite_text and element.text_equivs:
            indexes = [equiv.index for equiv in element.text_equivs if equiv.index is not None]
            index = max(indexes) + 1 if indexes else None
            element.text_equivs.append(TextEquiv(text, conf, index=index))
            return
        element.text_equivs = [TextEquiv(text, conf)]
        for descendant in _descendants(element):
            descendant.text_equivs = []

    def _read_segment(
        self, element: Element, level: Level, page_image: PageImage, *, depth: Level | None = None
    ) -> tuple[PageImage, list[Segment], tuple[int, int, int, int]]:
        """Cut `element` from the page image and read it as one `level` segment.

        Returns the cut image, Tesseract's blocks on it and the box, within the cut image,
        that new children are kept inside (the element without the padding).
        """
        pad = self.settings.image_padding
        image = segment_image(page_image, element.coords, padding=pad)
        blocks = self._read(image, _PSM[level], depth or self.settings.depth)
        width, height = image.image.size
        return image, blocks, (pad, pad, max(pad + 1, width - pad), max(pad + 1, height - pad))

    def _read(self, image: PageImage, psm: int, depth: Level) -> list[Segment]:
        if self.settings.shrink_polygons:
            depth = Level.GLYPH  # hulls are made from glyph boxes
        return self.tesseract.read(
            image.image, dpi=image.dpi, psm=psm, depth=depth, recognize=self.settings.recognize
        )

    def _builder(self, image: PageImage, ids: set[str]) -> PageBuilder:
        settings = self.settings
        return PageBuilder(
            to_page=image.to_original,
            used_ids=ids,
            depth=settings.depth,
            with_text=settings.recognize,
            padding=settings.box_padding,
            shrink_polygons=settings.shrink_polygons,
        )


def lines_of(blocks: Sequence[Segment]) -> list[Segment]:
    """Every text line in the blocks, table cells' lines included, in Tesseract's order."""
    lines: list[Segment] = []
    for block in blocks:
        if block.is_text_block:
            lines.extend(block.children)
        else:  # a table: its children are cells
            lines.extend(line for cell in block.children for line in cell.children)
    return lines


def words_of(blocks: Sequence[Segment]) -> list[Segment]:
    return [word for line in lines_of(blocks) for word in line.children]


def join_text_above(page: Page, level: Level) -> None:
    """Give every element above `level` its children's texts, joined by the consistency rule.

    Unlike formats.page.set_text_consistently, this leaves `level` itself alone even where
    it has children (existing segments below the recognised level, whose text was dropped).
    """
    for region in page.text_regions():
        if level >= Level.WORD:
            for line in region.lines:
                if level == Level.GLYPH:
                    for word in line.words:
                        _join(word, word.glyphs, "")
                _join(line, line.words, " ")
        if level >= Level.LINE:
            _join(region, region.lines, "\n")


def _join(parent: Element, children: Sequence[Element], separator: str) -> None:
    if not children:
        return
    confs = [child.conf for child in children]
    known = [conf for conf in confs if conf is not None]
    conf = sum(known) / len(known) if known and len(known) == len(confs) else None
    parent.text_equivs = [TextEquiv(separator.join(child.text for child in children), conf)]


def _mean_conf(segments: Sequence[Segment]) -> float | None:
    confs = [segment.conf for segment in segments if segment.conf is not None]
    return sum(confs) / len(confs) if confs else None


def _box_in(image: PageImage, points: Sequence[Point]) -> BBox:
    """The box (x1, y1 exclusive) in `image`'s pixels of a polygon in PAGE coordinates."""
    mapped = image.from_original([(float(x), float(y)) for x, y in points])
    xs, ys = [x for x, _ in mapped], [y for _, y in mapped]
    return min(xs), min(ys), max(xs) + 1, max(ys) + 1


def _share(found: Sequence[Segment], boxes: Sequence[BBox]) -> list[list[Segment]]:
    """Give each found segment to the box it overlaps most (else the nearest), in order."""
    shares: list[list[Segment]] = [[] for _ in boxes]
    if not boxes:
        return shares
    for segment in found:
        fits = [_fit(segment.box, box) for box in boxes]
        shares[fits.index(max(fits))].append(segment)
    return shares


def _fit(found: BBox, box: BBox) -> tuple[int, float]:
    """How well a found box fits an existing one: shared area, then nearness of centres."""
    x0, y0, x1, y1 = found
    b0, b1, b2, b3 = box
    overlap = max(0, min(x1, b2) - max(x0, b0)) * max(0, min(y1, b3) - max(y0, b1))
    return overlap, -abs((x0 + x1) / 2 - (b0 + b2) / 2)


def _descendants(element: Element) -> Iterator[Element]:
    if isinstance(element, TextRegion):
        for line in element.lines:
            yield line
            yield from _descendants(line)
    elif isinstance(element, TextLine):
        for word in element.words:
            yield word
            yield from word.glyphs
    elif isinstance(element, Word):
        yield from element.glyphs


def _reading_order_ids(page: Page) -> set[str]:
    """The ids of the reading order's groups: they share the document's id space."""
    if page.reading_order is None:
        return set()
    ids: set[str] = set()
    stack: list[ReadingOrderGroup] = [page.reading_order.root]
    while stack:
        group = stack.pop()
        ids.add(group.id)
        stack.extend(member for member in group.members if isinstance(member, ReadingOrderGroup))
    return ids


class AnnotatingProcessor(Processor):
    """What segment and recognize share: a resident Tesseract and the PageAnnotator over it.

    Subclasses set `self.tesseract` and `self.annotator` in `__init__`; every page is then
    loaded, annotated, stamped with the processing step and written the same way.
    """

    tesseract: Tesseract
    annotator: PageAnnotator

    def process_page(self, job: PageJob) -> list[OutputFile]:
        pcgts = load_input_page(job)
        image = page_image(pcgts, job.workspace_dir, dpi=self.parameters["dpi"])
        self.annotator.annotate(pcgts, image)
        step = tool_json(self.executable)["steps"][0]
        pcgts.metadata_extras.append(processing_step_item(self.executable, step, self.parameters))
        return [page_output(job, pcgts, file_grp=job.output_file_grps[0])]

    def close(self) -> None:
        self.tesseract.close()
