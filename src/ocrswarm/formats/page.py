"""PAGE-XML 2019: the typed model processors build and read, and the exports consume.

`parse_page` reads the 2013–2019 namespaces; `page_to_bytes` always writes 2019. Text regions
are modelled down to glyphs. Everything the model does not type (other region kinds' own
content, UserDefined, Labels, Roles, Layers, Relations, MetadataItem, unknown attributes…)
is kept verbatim, moved to the 2019 namespace, and written back at its schema position, so a
read-modify-write of a real file loses nothing.

Text consistency (OCR-D): a line's text is its words joined by " ", a region's text its
lines joined by "\\n", a word's text its glyphs joined. `.text` reads the first TextEquiv and
falls back to the children; `update_text` rewrites parents from their children.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any, Self, TypeAlias

from lxml import etree

from ocrswarm.errors import FormatError, PageXmlError, UnsafeInputError
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.safexml import parse_xml

_PAGE_NS_BASE = "http://schema.primaresearch.org/PAGE/gts/pagecontent/"
PAGE_NS_2013 = _PAGE_NS_BASE + "2013-07-15"
PAGE_NS_2016 = _PAGE_NS_BASE + "2016-07-15"
PAGE_NS_2017 = _PAGE_NS_BASE + "2017-07-15"
PAGE_NS_2018 = _PAGE_NS_BASE + "2018-07-15"
PAGE_NS_2019 = _PAGE_NS_BASE + "2019-07-15"
# Every namespace we read; 2016 and 2018 sit between the versions the issue names.
PAGE_NAMESPACES = frozenset({PAGE_NS_2013, PAGE_NS_2016, PAGE_NS_2017, PAGE_NS_2018, PAGE_NS_2019})
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"
PAGE_SCHEMA_LOCATION = f"{PAGE_NS_2019} {PAGE_NS_2019}/pagecontent.xsd"
PAGE_SCHEMA_PATH = Path(__file__).parent / "schemas" / "page.xsd"
_DEFAULT_NAMESPACE_DECLARATION = f' xmlns="{PAGE_NS_2019}"'
_CANONICAL_POINTS = re.compile(r"\d+,\d+(?: \d+,\d+)*")

# Region kinds other than TextRegion: modelled structurally (id, coords, nested regions),
# their own specific content kept raw.
OTHER_REGION_KINDS = frozenset(
    {
        "ImageRegion",
        "LineDrawingRegion",
        "GraphicRegion",
        "TableRegion",
        "ChartRegion",
        "MapRegion",
        "SeparatorRegion",
        "MathsRegion",
        "ChemRegion",
        "MusicRegion",
        "AdvertRegion",
        "NoiseRegion",
        "UnknownRegion",
        "CustomRegion",
    }
)

Point: TypeAlias = tuple[int, int]
BBox: TypeAlias = tuple[int, int, int, int]


def _check_conf(conf: float | None, what: str) -> None:
    if conf is not None and not 0.0 <= conf <= 1.0:  # also refuses NaN
        raise PageXmlError(f"{what} confidence {conf!r} is outside 0–1")


def _check_points(points: list[Point], what: str) -> None:
    if not points:
        raise PageXmlError(f"{what} needs at least one point")


def now_utc() -> str:
    """The current time as PAGE wants it in Created/LastChange: xsd:dateTime in UTC."""
    return datetime.now(UTC).replace(microsecond=0).isoformat()


# --- the model --------------------------------------------------------------------------


class _Polygon:
    """Points in absolute pixel coordinates of the original image, parsed on first use.

    Real pages hold tens of thousands of polygon points that many consumers never read;
    a polygon read from a file and never touched is written back verbatim.
    """

    __slots__ = ("_points", "_text", "conf")

    def __init__(self, points: list[Point], conf: float | None = None) -> None:
        _check_points(points, type(self).__name__)
        _check_conf(conf, type(self).__name__)
        self._points: list[Point] | None = points
        self._text: str | None = None
        self.conf = conf

    @classmethod
    def _from_text(cls, text: str, conf: float | None) -> Self:
        """From a points attribute already known to be canonical ("x,y x,y", digits only)."""
        polygon = cls.__new__(cls)
        polygon._points = None
        polygon._text = text
        polygon.conf = conf
        return polygon

    @property
    def points(self) -> list[Point]:
        if self._points is None:
            assert self._text is not None
            numbers = iter(map(int, self._text.replace(",", " ").split()))
            self._points = list(zip(numbers, numbers, strict=False))
            self._text = None  # the list, which callers may mutate, is the truth from now on
        return self._points

    @points.setter
    def points(self, points: list[Point]) -> None:
        _check_points(points, type(self).__name__)
        self._points = points
        self._text = None

    def points_text(self) -> str:
        """The PAGE points attribute: "x1,y1 x2,y2 …"."""
        if self._text is not None:
            return self._text
        return " ".join([f"{x},{y}" for x, y in self.points])

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Polygon)
        return self.points_text() == other.points_text() and self.conf == other.conf

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclasses around it

    def __repr__(self) -> str:
        return f"{type(self).__name__}(points={self.points!r}, conf={self.conf!r})"


class Coords(_Polygon):
    """The outline of an element (PAGE Coords)."""

    __slots__ = ()

    @property
    def bbox(self) -> BBox:
        """(x0, y0, x1, y1): the smallest rectangle around the polygon."""
        xs = [x for x, _ in self.points]
        ys = [y for _, y in self.points]
        return min(xs), min(ys), max(xs), max(ys)

    @classmethod
    def from_bbox(cls, bbox: BBox, conf: float | None = None) -> Coords:
        x0, y0, x1, y1 = bbox
        return cls([(x0, y0), (x1, y0), (x1, y1), (x0, y1)], conf)


class Baseline(_Polygon):
    """The polyline the glyphs of a TextLine sit on."""

    __slots__ = ()


@dataclass(slots=True)
class TextEquiv:
    """One reading of an element; `attributes` keeps dataType, comments and the like."""

    unicode: str
    conf: float | None = None
    index: int | None = None
    plain_text: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_conf(self.conf, "TextEquiv")
        if self.index is not None and self.index < 0:
            raise PageXmlError(f"TextEquiv index {self.index} is negative")


@dataclass(slots=True)
class TextStyle:
    """Font attributes exactly as PAGE spells them (fontFamily, fontSize, bold, italic…)."""

    attributes: dict[str, str] = field(default_factory=dict)

    def flag(self, name: str) -> bool:
        """Whether the boolean attribute `name` (e.g. "bold") is set."""
        return self.attributes.get(name) in ("true", "1")


@dataclass(slots=True)
class AlternativeImage:
    """A derived image (binarised, deskewed, cropped…) of the element it belongs to."""

    filename: str
    comments: str | None = None
    conf: float | None = None

    def __post_init__(self) -> None:
        _check_conf(self.conf, "AlternativeImage")


@dataclass(frozen=True, slots=True)
class RawElement:
    """An element the model does not type, kept as canonical 2019-namespace XML.

    Stored as bytes so it compares by content and cannot be mutated behind the model's back.
    """

    name: str
    xml: bytes

    @classmethod
    def from_element(cls, element: Any) -> RawElement:
        clone = _clone_in_2019(element, None)
        return cls(_local_name(element.tag), etree.tostring(clone, encoding="UTF-8"))

    @property
    def fragment(self) -> str:
        """The XML text to embed in a PAGE 2019 document (which declares the namespace)."""
        return self.xml.decode("utf-8").replace(_DEFAULT_NAMESPACE_DECLARATION, "", 1)

    def element(self) -> Any:
        """A fresh lxml element with this content."""
        return parse_xml(self.xml, what=f"preserved PAGE element {self.name}").getroot()


class _Textual:
    """Text access shared by every element that carries TextEquivs."""

    __slots__ = ()
    text_equivs: list[TextEquiv]

    @property
    def text(self) -> str:
        """The first TextEquiv's Unicode, or else the text derived from the children."""
        if self.text_equivs:
            return self.text_equivs[0].unicode
        return self.derived_text()

    @property
    def conf(self) -> float | None:
        return self.text_equivs[0].conf if self.text_equivs else None

    def derived_text(self) -> str:
        """The text the children spell by the consistency rule ("" for a leaf)."""
        return ""

    def set_text(self, text: str, conf: float | None = None) -> None:
        """Replace every TextEquiv by one reading."""
        self.text_equivs[:] = [TextEquiv(text, conf)]


def _joined_equiv(children: Sequence[_Textual], separator: str) -> TextEquiv:
    """The parent TextEquiv the consistency rule asks for; conf = mean of the children's."""
    confs = [child.conf for child in children]
    known = [conf for conf in confs if conf is not None]
    conf = sum(known) / len(known) if known and len(known) == len(confs) else None
    return TextEquiv(separator.join(child.text for child in children), conf)


@dataclass(slots=True)
class Glyph(_Textual):
    id: str
    coords: Coords
    text_equivs: list[TextEquiv] = field(default_factory=list)
    text_style: TextStyle | None = None
    alternative_images: list[AlternativeImage] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    extras: list[RawElement] = field(default_factory=list)


@dataclass(slots=True)
class Word(_Textual):
    id: str
    coords: Coords
    glyphs: list[Glyph] = field(default_factory=list)
    text_equivs: list[TextEquiv] = field(default_factory=list)
    text_style: TextStyle | None = None
    alternative_images: list[AlternativeImage] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    extras: list[RawElement] = field(default_factory=list)

    def derived_text(self) -> str:
        return "".join(glyph.text for glyph in self.glyphs)

    def update_text(self) -> None:
        """Set this word's text to its glyphs joined (nothing to do without glyphs)."""
        if self.glyphs:
            self.text_equivs = [_joined_equiv(self.glyphs, "")]


@dataclass(slots=True)
class TextLine(_Textual):
    id: str
    coords: Coords
    baseline: Baseline | None = None
    words: list[Word] = field(default_factory=list)
    text_equivs: list[TextEquiv] = field(default_factory=list)
    text_style: TextStyle | None = None
    alternative_images: list[AlternativeImage] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    extras: list[RawElement] = field(default_factory=list)

    def derived_text(self) -> str:
        return " ".join(word.text for word in self.words)

    def update_text(self) -> None:
        """Update the words from their glyphs, then this line from its words."""
        for word in self.words:
            word.update_text()
        if self.words:
            self.text_equivs = [_joined_equiv(self.words, " ")]


@dataclass(slots=True)
class TextRegion(_Textual):
    id: str
    coords: Coords
    lines: list[TextLine] = field(default_factory=list)
    regions: list[Region] = field(default_factory=list)
    type: str | None = None
    orientation: float | None = None
    text_equivs: list[TextEquiv] = field(default_factory=list)
    text_style: TextStyle | None = None
    alternative_images: list[AlternativeImage] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    extras: list[RawElement] = field(default_factory=list)

    def derived_text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    def update_text(self) -> None:
        """Update the lines (and their words), then this region from its lines.

        Nested regions are regions of their own: `Page.update_text` visits them.
        """
        for line in self.lines:
            line.update_text()
        if self.lines:
            self.text_equivs = [_joined_equiv(self.lines, "\n")]


@dataclass(slots=True)
class OtherRegion:
    """A non-text region (ImageRegion, SeparatorRegion, TableRegion…), `kind` its element name.

    Its nested regions are modelled (table cells are TextRegions); the rest of its content
    (Grid, Roles, …) and attributes are kept as they were.
    """

    kind: str
    id: str
    coords: Coords
    regions: list[Region] = field(default_factory=list)
    alternative_images: list[AlternativeImage] = field(default_factory=list)
    attributes: dict[str, str] = field(default_factory=dict)
    extras: list[RawElement] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in OTHER_REGION_KINDS:
            raise PageXmlError(f"unknown PAGE region kind {self.kind!r}")


Region: TypeAlias = TextRegion | OtherRegion
_REGION_NAMES = frozenset({"TextRegion"} | OTHER_REGION_KINDS)


@dataclass(slots=True)
class ReadingOrderGroup:
    """An OrderedGroup (ordered=True) or UnorderedGroup; members are region ids or groups."""

    id: str
    members: list[str | ReadingOrderGroup] = field(default_factory=list)
    ordered: bool = True
    region_ref: str | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    extras: list[RawElement] = field(default_factory=list)

    def region_ids(self) -> list[str]:
        """Every referenced region id, depth first (a group's own regionRef before its members)."""
        ids = [self.region_ref] if self.region_ref else []
        for member in self.members:
            ids.extend([member] if isinstance(member, str) else member.region_ids())
        return ids


@dataclass(slots=True)
class ReadingOrder:
    root: ReadingOrderGroup
    conf: float | None = None

    def __post_init__(self) -> None:
        _check_conf(self.conf, "ReadingOrder")

    @classmethod
    def from_region_ids(cls, region_ids: Sequence[str], group_id: str = "ro_1") -> ReadingOrder:
        """A flat OrderedGroup over `region_ids`, the usual reading order of a new page."""
        return cls(ReadingOrderGroup(group_id, list(region_ids)))

    def region_ids(self) -> list[str]:
        """The reading order flattened, without repeats."""
        return list(dict.fromkeys(self.root.region_ids()))


@dataclass(slots=True)
class Page:
    image_filename: str
    image_width: int
    image_height: int
    regions: list[Region] = field(default_factory=list)
    reading_order: ReadingOrder | None = None
    orientation: float | None = None
    border: Coords | None = None
    print_space: Coords | None = None
    alternative_images: list[AlternativeImage] = field(default_factory=list)
    text_style: TextStyle | None = None
    attributes: dict[str, str] = field(default_factory=dict)
    extras: list[RawElement] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.image_width < 0 or self.image_height < 0:
            raise PageXmlError(
                f"Page {self.image_filename}: negative image size "
                f"{self.image_width}x{self.image_height}"
            )

    def all_regions(self) -> Iterator[Region]:
        """Every region, nested ones included, in document order (parents first)."""
        stack = list(reversed(self.regions))
        while stack:
            region = stack.pop()
            yield region
            stack.extend(reversed(region.regions))

    def ids(self) -> set[str]:
        """Every id on the page: regions, lines, words, glyphs."""
        ids: set[str] = set()
        for region in self.all_regions():
            ids.add(region.id)
            if isinstance(region, TextRegion):
                for line in region.lines:
                    ids.add(line.id)
                    for word in line.words:
                        ids.add(word.id)
                        ids.update(glyph.id for glyph in word.glyphs)
        return ids

    def text_regions(self) -> list[TextRegion]:
        return [region for region in self.all_regions() if isinstance(region, TextRegion)]

    def text_regions_in_order(self) -> list[TextRegion]:
        """Text regions in reading order, then those it leaves out in document order.

        A region's nested regions follow it unless the reading order places them itself.
        """
        ordered_ids = self.reading_order.region_ids() if self.reading_order else []
        placed_explicitly = set(ordered_ids)
        by_id = {region.id: region for region in self.all_regions()}
        visited: set[int] = set()
        result: list[TextRegion] = []

        def visit(region: Region) -> None:
            if id(region) in visited:
                return
            visited.add(id(region))
            if isinstance(region, TextRegion):
                result.append(region)
            for child in region.regions:
                if child.id not in placed_explicitly:
                    visit(child)

        for region_id in ordered_ids:
            if region_id in by_id:
                visit(by_id[region_id])
        for region in self.all_regions():
            visit(region)
        return result

    @property
    def text(self) -> str:
        """The text regions' texts in reading order, joined by "\\n"."""
        return "\n".join(region.text for region in self.text_regions_in_order())

    def update_text(self) -> None:
        """Recompute every parent TextEquiv from its children (glyphs → words → lines → regions)."""
        for region in self.text_regions():
            region.update_text()


@dataclass(slots=True)
class PcGts:
    """One PAGE document: metadata and exactly one Page.

    `created` and `last_change` are xsd:dateTime strings, kept verbatim when read.
    """

    page: Page
    creator: str = "ocrswarm"
    created: str = field(default_factory=now_utc)
    last_change: str = field(default_factory=now_utc)
    comments: str | None = None
    pcgts_id: str | None = None
    metadata_attributes: dict[str, str] = field(default_factory=dict)
    metadata_extras: list[RawElement] = field(default_factory=list)

    @classmethod
    def new(cls, image_filename: str, width: int, height: int, creator: str = "ocrswarm") -> PcGts:
        """An empty page for `image_filename` (the original image), to be filled by a processor."""
        return cls(Page(image_filename, width, height), creator=creator)

    def touch(self) -> None:
        """Mark the document as changed now."""
        self.last_change = now_utc()


def unique_id(base: str, used: set[str]) -> str:
    """`base`, else `base_2`, `base_3`…: the first not in `used`, which it then joins."""
    candidate, number = base, 1
    while candidate in used:
        number += 1
        candidate = f"{base}_{number}"
    used.add(candidate)
    return candidate


def set_text_consistently(page: Page) -> None:
    """Make every parent's text the join of its children's (OCR-D's consistency rule)."""
    page.update_text()


def text_inconsistencies(page: Page) -> list[str]:
    """Where a parent's TextEquiv differs from what its children spell; [] = consistent."""
    problems: list[str] = []

    def check(kind: str, element: Any, children: Sequence[_Textual]) -> None:
        # Children without any text say nothing (OCR-D's validator skips them too): a line
        # read as a whole over an unread word segmentation is consistent.
        if element.text_equivs and children and any(child.text for child in children):
            derived = element.derived_text()
            if element.text != derived:
                problems.append(
                    f"{kind} {element.id}: {element.text!r} but children give {derived!r}"
                )

    for region in page.text_regions():
        check("TextRegion", region, region.lines)
        for line in region.lines:
            check("TextLine", line, line.words)
            for word in line.words:
                check("Word", word, word.glyphs)
    return problems


# --- parsing ----------------------------------------------------------------------------


def _local_name(tag: str) -> str:
    """Local name for a PAGE-namespace tag; anything else keeps its full {ns}name."""
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    return local if namespace in PAGE_NAMESPACES else tag


def _clone_in_2019(source: Any, parent: Any) -> Any:
    """Copy `source` (elements only) with PAGE tags moved to 2019 and layout whitespace dropped."""
    tag = source.tag
    name = _local_name(tag)
    if not name.startswith("{"):
        tag = f"{{{PAGE_NS_2019}}}{name}"
    attrib = dict(source.attrib)
    if parent is None:
        clone = etree.Element(tag, attrib, nsmap={None: PAGE_NS_2019})
    else:
        clone = etree.SubElement(parent, tag, attrib)
    children = list(source.iterchildren(etree.Element))
    if not children or (source.text and source.text.strip()):
        clone.text = source.text
    for child in children:
        child_clone = _clone_in_2019(child, clone)
        if child.tail and child.tail.strip():
            child_clone.tail = child.tail
    return clone


# What `_Reader.parts` collects: coords, baseline, nested children, text_equivs, text_style,
# alternative_images, extras.
_Parts: TypeAlias = tuple[
    Coords,
    Baseline | None,
    list[Any],
    list[TextEquiv],
    TextStyle | None,
    list[AlternativeImage],
    list[RawElement],
]


_NO_CHILDREN: dict[str, Any] = {}


class _Reader:
    """Turns the lxml tree of one PAGE document (any supported namespace) into the model.

    Values are checked here, where the line number is known, so the model's own checks
    never fire on parsed input. Pages hold thousands of words: the per-element path is lean.
    """

    def __init__(self, namespace: str, name: str) -> None:
        # Full tag -> local name for everything the reader dispatches on; the rest is raw.
        self.names = {f"{{{namespace}}}{local}": local for local in _MODELLED_NAMES}
        self.name = name
        self.region_children: dict[str, Any] = dict.fromkeys(_REGION_NAMES, self.region)
        self.text_region_children = {**self.region_children, "TextLine": self.text_line}
        self.line_children = {"Word": self.word}
        self.word_children = {"Glyph": self.glyph}

    def error(self, element: Any, message: str) -> PageXmlError:
        return PageXmlError(f"{self.name}, line {element.sourceline}: {message}")

    def children(self, element: Any) -> Iterator[tuple[str | None, Any]]:
        """(modelled local name or None, element) for each child element."""
        names = self.names
        for child in element.iterchildren(etree.Element):
            yield names.get(child.tag), child

    def required(self, attributes: dict[str, str], key: str, element: Any, what: str) -> str:
        value = attributes.pop(key, None)
        if value is None:
            raise self.error(element, f"{what} has no @{key}")
        return value

    def integer(self, value: str, element: Any, what: str) -> int:
        try:
            return int(value)
        except ValueError:
            raise self.error(element, f"{what} is not an integer: {value!r}") from None

    def number(self, value: str | None, element: Any, what: str) -> float | None:
        if value is None:
            return None
        try:
            return float(value)
        except ValueError:
            raise self.error(element, f"{what} is not a number: {value!r}") from None

    def conf(self, value: str | None, element: Any, what: str) -> float | None:
        conf = self.number(value, element, f"{what} @conf")
        if conf is not None and not 0.0 <= conf <= 1.0:
            raise self.error(element, f"{what} confidence {value} is outside 0–1")
        return conf

    def coords(self, element: Any, owner: str, kind: type[_Polygon] = Coords) -> Any:
        """Coords or Baseline; canonical points stay text until someone reads them."""
        what = f"{kind.__name__} of {owner}"
        raw_conf = element.get("conf")
        conf = None if raw_conf is None else self.conf(raw_conf, element, what)
        value = element.get("points")
        if value is None:
            raise self.error(element, f"{what} has no @points")
        if _CANONICAL_POINTS.fullmatch(value):
            return kind._from_text(value, conf)
        # Irregular spacing, signs or fractions (other tools write them): parse now, and
        # write back normalised.
        fields = value.replace(",", " ").split()
        try:
            numbers = [round(float(field)) for field in fields]
        except ValueError:
            numbers = []
        if not numbers or len(numbers) % 2 or value.count(",") != len(numbers) // 2:
            raise self.error(element, f"{what} has malformed points {value[:80]!r}")
        pairs = iter(numbers)
        return kind(list(zip(pairs, pairs, strict=False)), conf)

    def coords_child(self, element: Any, owner: str) -> Coords:
        for name, child in self.children(element):
            if name == "Coords":
                coords: Coords = self.coords(child, owner)
                return coords
        raise self.error(element, f"{owner} has no Coords")

    def text_equiv(self, element: Any) -> TextEquiv:
        conf = index = None
        attributes: dict[str, str] = {}
        if element.keys():  # most TextEquivs carry at most @conf
            attributes = dict(element.attrib)
            conf = self.conf(attributes.pop("conf", None), element, "TextEquiv")
            raw_index = attributes.pop("index", None)
            if raw_index is not None:
                index = self.integer(raw_index, element, "TextEquiv @index")
                if index < 0:
                    raise self.error(element, f"TextEquiv @index {index} is negative")
        unicode = ""
        plain_text = None
        names = self.names
        for child in element:
            name = names.get(child.tag)
            if name == "Unicode":
                unicode = child.text or ""
            elif name == "PlainText":
                plain_text = child.text or ""
        return TextEquiv(unicode, conf, index, plain_text, attributes)

    def alternative_image(self, element: Any) -> AlternativeImage:
        filename = element.get("filename")
        if filename is None:
            raise self.error(element, "AlternativeImage has no @filename")
        conf = self.conf(element.get("conf"), element, "AlternativeImage")
        return AlternativeImage(filename, element.get("comments"), conf)

    def parts(self, element: Any, owner: str, nested: dict[str, Any], textual: bool) -> _Parts:
        """Collect an element's children in one pass; `nested` maps child names to readers."""
        coords = baseline = text_style = None
        children: list[Any] = []
        text_equivs: list[TextEquiv] = []
        images: list[AlternativeImage] = []
        extras: list[RawElement] = []
        names = self.names
        for child in element:
            tag = child.tag
            name = names.get(tag)
            if name == "Coords":
                coords = self.coords(child, owner)
            elif textual and name == "TextEquiv":
                text_equivs.append(self.text_equiv(child))
            elif name in nested:
                children.append(nested[name](child, name))
            elif textual and name == "TextStyle":
                text_style = TextStyle(dict(child.attrib))
            elif name == "AlternativeImage":
                images.append(self.alternative_image(child))
            elif name == "Baseline" and "Word" in nested:
                baseline = self.coords(child, owner, Baseline)
            elif isinstance(tag, str):  # comments and processing instructions are dropped
                extras.append(RawElement.from_element(child))
        if coords is None:
            raise self.error(element, f"{owner} has no Coords")
        return coords, baseline, children, text_equivs, text_style, images, extras

    def glyph(self, element: Any, _name: str) -> Glyph:
        attributes = dict(element.attrib)
        glyph_id = self.required(attributes, "id", element, "Glyph")
        coords, _, _, text_equivs, style, images, extras = self.parts(
            element, f"Glyph {glyph_id}", _NO_CHILDREN, True
        )
        return Glyph(glyph_id, coords, text_equivs, style, images, attributes, extras)

    def word(self, element: Any, _name: str) -> Word:
        attributes = dict(element.attrib)
        word_id = self.required(attributes, "id", element, "Word")
        coords, _, glyphs, text_equivs, style, images, extras = self.parts(
            element, f"Word {word_id}", self.word_children, True
        )
        return Word(word_id, coords, glyphs, text_equivs, style, images, attributes, extras)

    def text_line(self, element: Any, _name: str) -> TextLine:
        attributes = dict(element.attrib)
        line_id = self.required(attributes, "id", element, "TextLine")
        coords, baseline, words, text_equivs, style, images, extras = self.parts(
            element, f"TextLine {line_id}", self.line_children, True
        )
        return TextLine(
            line_id, coords, baseline, words, text_equivs, style, images, attributes, extras
        )

    def region(self, element: Any, kind: str) -> Region:
        attributes = dict(element.attrib)
        region_id = self.required(attributes, "id", element, kind)
        textual = kind == "TextRegion"
        nested = self.text_region_children if textual else self.region_children
        coords, _, children, text_equivs, style, images, extras = self.parts(
            element, f"{kind} {region_id}", nested, textual
        )
        regions = [child for child in children if not isinstance(child, TextLine)]
        if not textual:
            return OtherRegion(kind, region_id, coords, regions, images, attributes, extras)
        orientation = self.number(attributes.pop("orientation", None), element, "orientation")
        return TextRegion(
            region_id,
            coords,
            [child for child in children if isinstance(child, TextLine)],
            regions,
            attributes.pop("type", None),
            orientation,
            text_equivs,
            style,
            images,
            attributes,
            extras,
        )

    def group(self, element: Any, ordered: bool) -> ReadingOrderGroup:
        attributes = dict(element.attrib)
        group_id = self.required(attributes, "id", element, "reading order group")
        attributes.pop("index", None)  # rewritten from the member's position
        group = ReadingOrderGroup(
            group_id, ordered=ordered, region_ref=attributes.pop("regionRef", None)
        )
        group.attributes = attributes
        members: list[tuple[int, int, str | ReadingOrderGroup]] = []
        for position, (name, child) in enumerate(self.children(element)):
            member: str | ReadingOrderGroup
            if name in ("RegionRefIndexed", "RegionRef"):
                member = self.required(dict(child.attrib), "regionRef", child, name)
            elif name in ("OrderedGroupIndexed", "OrderedGroup"):
                member = self.group(child, ordered=True)
            elif name in ("UnorderedGroupIndexed", "UnorderedGroup"):
                member = self.group(child, ordered=False)
            else:
                group.extras.append(RawElement.from_element(child))
                continue
            raw_index = child.get("index")
            index = position if raw_index is None else self.integer(raw_index, child, "@index")
            members.append((index, position, member))
        if ordered:
            members.sort(key=lambda entry: (entry[0], entry[1]))
        group.members = [member for _, _, member in members]
        return group

    def reading_order(self, element: Any) -> ReadingOrder | None:
        conf = self.conf(element.get("conf"), element, "ReadingOrder")
        for name, child in self.children(element):
            if name in ("OrderedGroup", "UnorderedGroup"):
                return ReadingOrder(self.group(child, ordered=name == "OrderedGroup"), conf)
        return None

    def size(self, attributes: dict[str, str], key: str, element: Any) -> int:
        value = self.integer(self.required(attributes, key, element, "Page"), element, key)
        if value < 0:
            raise self.error(element, f"Page @{key} is negative: {value}")
        return value

    def page(self, element: Any) -> Page:
        attributes = dict(element.attrib)
        filename = self.required(attributes, "imageFilename", element, "Page")
        width = self.size(attributes, "imageWidth", element)
        height = self.size(attributes, "imageHeight", element)
        orientation = self.number(attributes.pop("orientation", None), element, "Page @orientation")
        page = Page(filename, width, height, orientation=orientation, attributes=attributes)
        for name, child in self.children(element):
            if name in _REGION_NAMES:
                page.regions.append(self.region(child, name))
            elif name == "Border":
                page.border = self.coords_child(child, "Border")
            elif name == "PrintSpace":
                page.print_space = self.coords_child(child, "PrintSpace")
            elif name == "ReadingOrder":
                page.reading_order = self.reading_order(child)
            elif name == "AlternativeImage":
                page.alternative_images.append(self.alternative_image(child))
            elif name == "TextStyle":
                page.text_style = TextStyle(dict(child.attrib))
            else:
                page.extras.append(RawElement.from_element(child))
        return page

    def pcgts(self, root: Any) -> PcGts:
        page = metadata = None
        for name, child in self.children(root):
            if name == "Page":
                if page is not None:
                    raise self.error(child, "a PAGE document holds exactly one Page")
                page = self.page(child)
            elif name == "Metadata":
                metadata = child
        if page is None:
            raise PageXmlError(f"{self.name} has no Page element")
        pcgts = PcGts(page, pcgts_id=root.get("pcGtsId"))
        if metadata is not None:
            self.metadata(metadata, pcgts)
        return pcgts

    def metadata(self, element: Any, pcgts: PcGts) -> None:
        pcgts.metadata_attributes = dict(element.attrib)
        for name, child in self.children(element):
            text = (child.text or "").strip()
            if name == "Creator":
                pcgts.creator = text
            elif name == "Created":
                pcgts.created = text
            elif name == "LastChange":
                pcgts.last_change = text
            elif name == "Comments":
                pcgts.comments = child.text or ""
            else:
                pcgts.metadata_extras.append(RawElement.from_element(child))


def parse_page(source: bytes | Path) -> PcGts:
    """Read a PAGE-XML document (2013–2019 namespaces) into the model.

    Raises UnsafeInputError for hostile XML (DOCTYPE, entities, oversize) and PageXmlError
    for anything that is not a well-formed PAGE document.
    """
    name = f"PAGE-XML {source}" if isinstance(source, Path) else "PAGE-XML document"
    try:
        root = parse_xml(source, what="PAGE-XML").getroot()
    except UnsafeInputError:
        raise
    except FormatError as error:
        raise PageXmlError(str(error)) from error
    tag = root.tag
    namespace, _, local = tag[1:].partition("}") if tag.startswith("{") else ("", "", tag)
    if local != "PcGts" or namespace not in PAGE_NAMESPACES:
        raise PageXmlError(
            f"{name} is not PAGE-XML: the root element is {tag}, "
            f"expected PcGts in a PAGE namespace (2013–2019)"
        )
    return _Reader(namespace, name).pcgts(root)


# --- writing ----------------------------------------------------------------------------

_MODELLED_NAMES = (
    *("PcGts", "Metadata", "Creator", "Created", "LastChange", "Comments", "Page"),
    *("AlternativeImage", "Border", "PrintSpace", "ReadingOrder", "TextStyle"),
    *("OrderedGroup", "UnorderedGroup", "OrderedGroupIndexed", "UnorderedGroupIndexed"),
    *("RegionRefIndexed", "RegionRef", "Coords", "TextLine", "Baseline"),
    *("Word", "Glyph", "TextEquiv", "PlainText", "Unicode"),
    *sorted(_REGION_NAMES),
)
# Unmodelled children the schema places right after Coords; all others go last.
_REGION_AFTER_COORDS = frozenset({"UserDefined", "Labels", "Roles"})
_GLYPH_AFTER_COORDS = frozenset({"Graphemes"})
_PAGE_BEFORE_STYLE = frozenset({"Layers", "Relations"})
_PAGE_BEFORE_REGIONS = frozenset({"UserDefined", "Labels"})

_ATTRIBUTE_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)
_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_NOT_XML_CHARACTER = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
_ATTRIBUTE_PREFIXES = {"http://www.w3.org/XML/1998/namespace": "xml", XSI_NS: "xsi"}
_XML_DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'


def _number(value: float) -> str:
    return repr(float(value))


def _attributes(attributes: dict[str, str]) -> str:
    """` name="value"` pairs; a namespaced key ({ns}name) gets a prefix, declared if needed."""
    text: list[str] = []
    for key, value in attributes.items():
        name = key
        if key.startswith("{"):
            namespace, _, local = key[1:].partition("}")
            prefix = _ATTRIBUTE_PREFIXES.get(namespace)
            if prefix is None:
                prefix = f"ns{len(text)}"
                text.append(f' xmlns:{prefix}="{namespace.translate(_ATTRIBUTE_ESCAPES)}"')
            name = f"{prefix}:{local}"
        text.append(f' {name}="{value.translate(_ATTRIBUTE_ESCAPES)}"')
    return "".join(text)


class _Writer:
    """Builds indented PAGE XML as text: several times faster than creating lxml elements."""

    def __init__(self) -> None:
        self.chunks: list[str] = [_XML_DECLARATION]
        self.indent = ""

    def open(self, name: str, attributes: dict[str, str]) -> None:
        self.chunks.append(f"{self.indent}<{name}{_attributes(attributes)}>\n")
        self.indent += "  "

    def close(self, name: str) -> None:
        self.indent = self.indent[:-2]
        self.chunks.append(f"{self.indent}</{name}>\n")

    def empty(self, name: str, attributes: dict[str, str]) -> None:
        self.chunks.append(f"{self.indent}<{name}{_attributes(attributes)}/>\n")

    def text(self, name: str, text: str) -> None:
        self.chunks.append(f"{self.indent}<{name}>{text.translate(_TEXT_ESCAPES)}</{name}>\n")

    def raw(self, extras: list[RawElement], names: frozenset[str], *, only: bool = True) -> None:
        """Write the extras named in `names` (or, with only=False, all the others)."""
        for raw in extras:
            if (raw.name in names) == only:
                self.chunks.append(f"{self.indent}{raw.fragment}\n")

    def result(self) -> bytes:
        document = "".join(self.chunks)
        bad = _NOT_XML_CHARACTER.search(document)
        if bad:
            context = document[max(0, bad.start() - 40) : bad.start()]
            raise PageXmlError(
                f"cannot write PAGE-XML: character U+{ord(bad.group()):04X} is not allowed "
                f"in XML (after {context!r})"
            )
        return document.encode("utf-8")


def _write_coords(writer: _Writer, name: str, coords: _Polygon) -> None:
    attributes = {"points": coords.points_text()}
    if coords.conf is not None:
        attributes["conf"] = _number(coords.conf)
    writer.empty(name, attributes)


def _write_images(writer: _Writer, images: list[AlternativeImage]) -> None:
    for image in images:
        attributes = {"filename": image.filename}
        if image.comments is not None:
            attributes["comments"] = image.comments
        if image.conf is not None:
            attributes["conf"] = _number(image.conf)
        writer.empty("AlternativeImage", attributes)


def _write_text(writer: _Writer, equivs: list[TextEquiv], style: TextStyle | None) -> None:
    for equiv in equivs:
        attributes: dict[str, str] = {}
        if equiv.index is not None:
            attributes["index"] = str(equiv.index)
        if equiv.conf is not None:
            attributes["conf"] = _number(equiv.conf)
        attributes.update(equiv.attributes)
        writer.open("TextEquiv", attributes)
        if equiv.plain_text is not None:
            writer.text("PlainText", equiv.plain_text)
        writer.text("Unicode", equiv.unicode)
        writer.close("TextEquiv")
    if style is not None:
        writer.empty("TextStyle", style.attributes)


def _write_glyph(writer: _Writer, glyph: Glyph) -> None:
    writer.open("Glyph", {"id": glyph.id, **glyph.attributes})
    _write_images(writer, glyph.alternative_images)
    _write_coords(writer, "Coords", glyph.coords)
    writer.raw(glyph.extras, _GLYPH_AFTER_COORDS)
    _write_text(writer, glyph.text_equivs, glyph.text_style)
    writer.raw(glyph.extras, _GLYPH_AFTER_COORDS, only=False)
    writer.close("Glyph")


def _write_word(writer: _Writer, word: Word) -> None:
    writer.open("Word", {"id": word.id, **word.attributes})
    _write_images(writer, word.alternative_images)
    _write_coords(writer, "Coords", word.coords)
    for glyph in word.glyphs:
        _write_glyph(writer, glyph)
    _write_text(writer, word.text_equivs, word.text_style)
    writer.raw(word.extras, frozenset(), only=False)
    writer.close("Word")


def _write_line(writer: _Writer, line: TextLine) -> None:
    writer.open("TextLine", {"id": line.id, **line.attributes})
    _write_images(writer, line.alternative_images)
    _write_coords(writer, "Coords", line.coords)
    if line.baseline is not None:
        _write_coords(writer, "Baseline", line.baseline)
    for word in line.words:
        _write_word(writer, word)
    _write_text(writer, line.text_equivs, line.text_style)
    writer.raw(line.extras, frozenset(), only=False)
    writer.close("TextLine")


def _write_region(writer: _Writer, region: Region) -> None:
    attributes = {"id": region.id}
    if isinstance(region, TextRegion):
        if region.type is not None:
            attributes["type"] = region.type
        if region.orientation is not None:
            attributes["orientation"] = _number(region.orientation)
    attributes.update(region.attributes)
    kind = "TextRegion" if isinstance(region, TextRegion) else region.kind
    writer.open(kind, attributes)
    _write_images(writer, region.alternative_images)
    _write_coords(writer, "Coords", region.coords)
    writer.raw(region.extras, _REGION_AFTER_COORDS)
    for child in region.regions:
        _write_region(writer, child)
    if isinstance(region, TextRegion):
        for line in region.lines:
            _write_line(writer, line)
        _write_text(writer, region.text_equivs, region.text_style)
    writer.raw(region.extras, _REGION_AFTER_COORDS, only=False)
    writer.close(kind)


def _write_group(writer: _Writer, group: ReadingOrderGroup, index: int | None) -> None:
    name = ("OrderedGroup" if group.ordered else "UnorderedGroup") + (
        "Indexed" if index is not None else ""
    )
    attributes = {"id": group.id}
    if index is not None:
        attributes["index"] = str(index)
    if group.region_ref is not None:
        attributes["regionRef"] = group.region_ref
    attributes.update(group.attributes)
    writer.open(name, attributes)
    writer.raw(group.extras, frozenset(), only=False)
    for position, member in enumerate(group.members):
        member_index = position if group.ordered else None
        if isinstance(member, ReadingOrderGroup):
            _write_group(writer, member, member_index)
        elif member_index is not None:
            writer.empty("RegionRefIndexed", {"index": str(member_index), "regionRef": member})
        else:
            writer.empty("RegionRef", {"regionRef": member})
    writer.close(name)


def _write_page(writer: _Writer, page: Page) -> None:
    attributes = {
        "imageFilename": page.image_filename,
        "imageWidth": str(page.image_width),
        "imageHeight": str(page.image_height),
    }
    if page.orientation is not None:
        attributes["orientation"] = _number(page.orientation)
    attributes.update(page.attributes)
    writer.open("Page", attributes)
    _write_images(writer, page.alternative_images)
    for name, coords in (("Border", page.border), ("PrintSpace", page.print_space)):
        if coords is not None:
            writer.open(name, {})
            _write_coords(writer, "Coords", coords)
            writer.close(name)
    # The schema wants at least one member in a group: an empty reading order says nothing.
    if page.reading_order is not None and page.reading_order.root.members:
        conf = page.reading_order.conf
        writer.open("ReadingOrder", {} if conf is None else {"conf": _number(conf)})
        _write_group(writer, page.reading_order.root, None)
        writer.close("ReadingOrder")
    writer.raw(page.extras, _PAGE_BEFORE_STYLE)
    if page.text_style is not None:
        writer.empty("TextStyle", page.text_style.attributes)
    writer.raw(page.extras, _PAGE_BEFORE_REGIONS)
    for region in page.regions:
        _write_region(writer, region)
    writer.raw(page.extras, _PAGE_BEFORE_STYLE | _PAGE_BEFORE_REGIONS, only=False)
    writer.close("Page")


def page_to_bytes(pcgts: PcGts) -> bytes:
    """Serialise to PAGE 2019: indented UTF-8 with an XML declaration.

    Raises PageXmlError when a text holds a character XML cannot carry (e.g. U+0000).
    """
    writer = _Writer()
    root = {"xmlns": PAGE_NS_2019, "xmlns:xsi": XSI_NS, "xsi:schemaLocation": PAGE_SCHEMA_LOCATION}
    if pcgts.pcgts_id is not None:
        root["pcGtsId"] = pcgts.pcgts_id
    writer.open("PcGts", root)
    writer.open("Metadata", pcgts.metadata_attributes)
    writer.text("Creator", pcgts.creator)
    writer.text("Created", pcgts.created)
    writer.text("LastChange", pcgts.last_change)
    if pcgts.comments is not None:
        writer.text("Comments", pcgts.comments)
    writer.raw(pcgts.metadata_extras, frozenset(), only=False)
    writer.close("Metadata")
    _write_page(writer, pcgts.page)
    writer.close("PcGts")
    return writer.result()


def save_page(pcgts: PcGts, path: Path) -> None:
    """Write the document to `path` atomically (readers never see half a file)."""
    write_atomic(path, page_to_bytes(pcgts))


# --- validation -------------------------------------------------------------------------

_SCHEMA_LOCK = threading.Lock()  # an lxml schema keeps its error log on the instance


@cache
def _page_schema() -> Any:
    return etree.XMLSchema(parse_xml(PAGE_SCHEMA_PATH, what="PAGE schema"))


def validate_page(data: bytes | Path) -> list[str]:
    """Errors of `data` against the shipped PAGE 2019 schema; [] means valid.

    Raises FormatError (UnsafeInputError) when `data` is not (safe) XML at all.
    """
    document = parse_xml(data, what="PAGE-XML")
    with _SCHEMA_LOCK:
        schema = _page_schema()
        if schema.validate(document):
            return []
        return [f"line {error.line}: {error.message}" for error in schema.error_log]
