"""The image a processor works on, and the way back from its pixels to PAGE coordinates.

PAGE coordinates are always in the frame of the original image (`Page/@imageFilename`), but
a processor usually works on a derived image: binarized, cropped to the Border, deskewed by
the page's `@orientation`. OCR-D records what was done to a derived image in its
`AlternativeImage/@comments`, a comma-separated list of features ("binarized", "cropped",
"deskewed", "rotated-90", "grayscale_normalized", …), and reconstructs the geometry from
those features and the PAGE itself. `page_image` does the same and returns a `PageImage`
that carries the affine map between the two frames, so a processor converts its results with
`to_original` and never thinks about rotation centres or crop offsets.

Geometry follows OCR-D (ocrd_utils.image): cropping keeps the bounding box of the Border,
deskewing rotates counter-clockwise by `-@orientation` around the image centre and expands
the canvas (as Pillow's `rotate(expand=True)` does), an orientation beyond ±45° is first
applied as a lossless transposition ("rotated-90/180/270"). Pixels are addressed by their
centres, so integer points survive a round trip through a rotation.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from PIL import Image, ImageDraw, ImageStat

from ocrswarm.errors import FormatError
from ocrswarm.formats.images import image_dpi, inspect_image, mimetype_for, open_image
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import (
    AlternativeImage,
    Coords,
    PcGts,
    Point,
    page_to_bytes,
    parse_page,
)
from ocrswarm.formats.workspace import resolve_href
from ocrswarm.processors.processor import InputFile, OutputFile, PageJob, output_file_id

LOG = logging.getLogger(__name__)

BINARIZED = "binarized"
CROPPED = "cropped"
DESKEWED = "deskewed"
ROTATED = ("rotated-90", "rotated-180", "rotated-270")
# Features page_image can reproduce itself from the PAGE (Border, @orientation); an image
# that has other features ("binarized") is "richer" and preferred, as in OCR-D.
GEOMETRIC_FEATURES = frozenset({CROPPED, DESKEWED, *ROTATED})
# Features a segment image inherits from the page image it was cut from (OCR-D's rule):
# they describe the pixels, not the geometry.
PIXEL_FEATURES = frozenset({BINARIZED, "grayscale_normalized", "despeckled", "dewarped"})
# Pixels this far from the size the features predict mean the image does not fit the PAGE.
_SIZE_SLACK = 2


@dataclass(frozen=True, slots=True)
class Affine:
    """A 2-D affine map: x' = a·x + b·y + c, y' = d·x + e·y + f (continuous coordinates)."""

    a: float = 1.0
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    e: float = 1.0
    f: float = 0.0

    def __call__(self, x: float, y: float) -> tuple[float, float]:
        return self.a * x + self.b * y + self.c, self.d * x + self.e * y + self.f

    def then(self, after: Affine) -> Affine:
        """The map that applies `self` first, then `after`."""
        return Affine(
            after.a * self.a + after.b * self.d,
            after.a * self.b + after.b * self.e,
            after.a * self.c + after.b * self.f + after.c,
            after.d * self.a + after.e * self.d,
            after.d * self.b + after.e * self.e,
            after.d * self.c + after.e * self.f + after.f,
        )

    def inverse(self) -> Affine:
        det = self.a * self.e - self.b * self.d
        a, b, d, e = self.e / det, -self.b / det, -self.d / det, self.a / det
        return Affine(a, b, -(a * self.c + b * self.f), d, e, -(d * self.c + e * self.f))

    @classmethod
    def translation(cls, dx: float, dy: float) -> Affine:
        return cls(c=dx, f=dy)

    @classmethod
    def rotation(
        cls, angle: float, center: tuple[float, float], new_center: tuple[float, float]
    ) -> Affine:
        """Counter-clockwise by `angle` degrees (y points down), `center` moving to `new_center`."""
        radians = math.radians(angle)
        cos, sin = math.cos(radians), math.sin(radians)
        if angle % 90 == 0:  # exact for transpositions
            cos, sin = round(cos), round(sin)
        (cx, cy), (nx, ny) = center, new_center
        return cls(cos, sin, nx - cos * cx - sin * cy, -sin, cos, ny + sin * cx - cos * cy)


IDENTITY = Affine()


@dataclass(frozen=True, slots=True)
class PageImage:
    """An image of a page (or of a segment cut from it) and how it relates to the original.

    `features`: what was done to the pixels, OCR-D's @comments vocabulary; `comments` keeps
    them in the order applied (use `derived_comments` for a new AlternativeImage). `dpi`: of
    the original scan (300 when unknown). `angle`: degrees the image is rotated
    counter-clockwise with respect to the original (Pillow's `rotate` direction; a page
    deskewed by its @orientation has `angle == -orientation`). `transform` maps original
    coordinates to this image's; `original_size` is the original's (width, height).
    """

    image: Image.Image
    features: frozenset[str]
    dpi: float
    angle: float
    original_size: tuple[int, int]
    transform: Affine = IDENTITY
    comments: str = ""

    def to_original(self, points: Sequence[tuple[float, float]]) -> list[Point]:
        """Points of this image -> PAGE points of the original, clipped to the original."""
        inverse = self.transform.inverse()
        width, height = self.original_size
        return [
            (_clip(x, width), _clip(y, height))
            for x, y in (_map_pixel(inverse, point) for point in points)
        ]

    def from_original(self, points: Sequence[tuple[float, float]]) -> list[Point]:
        """PAGE points of the original -> points of this image (not clipped: may lie outside)."""
        return [(_round(x), _round(y)) for x, y in (_map_pixel(self.transform, p) for p in points)]

    def derived_comments(self, *features: str) -> str:
        """The @comments of an AlternativeImage made from this image by `features`."""
        existing = _split_features(self.comments)
        return ",".join(existing + [f for f in features if f not in existing])

    def with_image(self, image: Image.Image, *features: str) -> PageImage:
        """The same geometry with new pixels (of the same size) that `features` produced."""
        if image.size != self.image.size:
            raise ValueError(f"new image is {image.size}, not {self.image.size}")
        comments = self.derived_comments(*features)
        return replace(
            self, image=image, features=frozenset(_split_features(comments)), comments=comments
        )


def page_image(
    pcgts: PcGts,
    workspace_dir: Path,
    *,
    feature_selector: Collection[str] = (),
    feature_filter: Collection[str] = (),
    dpi: float | None = None,
) -> PageImage:
    """The image of the page to work on, as OCR-D's `image_from_page` chooses it.

    Among the Page's AlternativeImages, those whose features include all of
    `feature_selector` and none of `feature_filter` qualify; the richest (most features that
    are not merely geometric) wins, the latest among equals. Without one, the original image.
    Then the Border crop and the @orientation rotation are applied if the PAGE asks for them,
    the image lacks them and `feature_filter` does not exclude them.

    Hrefs are resolved against `workspace_dir` and may not leave it (UnsafeInputError).
    `dpi` overrides the original's metadata when given and positive (the processors' `dpi`
    parameter); otherwise it comes from the original (300 when missing or implausible).
    """
    page = pcgts.page
    selector, excluded = frozenset(feature_selector), frozenset(feature_filter)
    chosen = _choose_alternative(page.alternative_images, selector, excluded)
    original_path = resolve_href(workspace_dir, page.image_filename)
    if chosen is None:
        image, comments = open_image(original_path), ""
        found_dpi = image_dpi(image)
        original_size = (page.image_width or image.width, page.image_height or image.height)
    else:
        image = open_image(resolve_href(workspace_dir, chosen.filename))
        comments = chosen.comments or ""
        found_dpi, original_size = _original_facts(
            original_path, page.image_width, page.image_height, fallback=image
        )
    result = PageImage(
        image=image,
        features=frozenset(_split_features(comments)),
        dpi=dpi if dpi and dpi > 0 else found_dpi,
        angle=0.0,
        original_size=original_size,
        comments=comments,
    )
    orientation, skew = split_angle(-(page.orientation or 0.0))
    result = _replay(result, _split_features(comments), page.border, orientation, skew)
    if page.border is not None and CROPPED not in result.features | excluded:
        result = crop(result, page.border, feature=CROPPED)
    rotated = f"rotated-{orientation}"
    if orientation and not result.features & set(ROTATED) and rotated not in excluded:
        result = _transpose(result, orientation)
    if skew and DESKEWED not in result.features | excluded:
        result = _rotate(result, skew)
    return result


def rotate(image: PageImage, angle: float) -> PageImage:
    """Rotate counter-clockwise by `angle` degrees, expanding the canvas, as deskewing does.

    A part beyond ±45° becomes a transposition ("rotated-90/180/270"), the rest a rotation
    ("deskewed", recorded even for 0° so consumers know the image is straight).
    """
    orientation, skew = split_angle(angle)
    if orientation:
        image = _transpose(image, orientation)
    return _rotate(image, skew)


def split_angle(angle: float) -> tuple[int, float]:
    """A counter-clockwise angle as (multiple of 90 in 0..270, remainder in [-45, 45])."""
    orientation = int((angle + 45) % 360 // 90 * 90)
    skew = (angle - orientation + 180) % 360 - 180
    return orientation, skew


def crop(
    image: PageImage,
    coords: Coords,
    *,
    padding: int = 0,
    mask: bool = True,
    feature: str | None = None,
) -> PageImage:
    """Cut out the bounding box of `coords` (original frame), grown by `padding` pixels.

    With `mask`, pixels outside the polygon (and padding beyond the image) are filled with
    the segment's median colour, its background. `feature` ("cropped") is recorded when the
    crop is a page-level operation OCR-D would name.
    """
    points = [_map_pixel(image.transform, point) for point in coords.points]
    x0, y0, x1, y1 = _pixel_bbox(points)
    x0, y0, x1, y1 = x0 - padding, y0 - padding, x1 + padding, y1 + padding
    pixels = _cut(image.image, (x0, y0, x1, y1), [(x - x0, y - y0) for x, y in points], mask)
    result = replace(
        image, image=pixels, transform=image.transform.then(Affine.translation(-x0, -y0))
    )
    return result.with_image(pixels, feature) if feature else result


def segment_image(
    page: PageImage, coords: Coords, *, padding: int = 0, mask: bool = True
) -> PageImage:
    """The image of a region, line, word or glyph, cut from `page` by its PAGE `coords`.

    The result is a PageImage too: its `to_original` maps the segment image's points (say,
    Tesseract's boxes on it) straight to PAGE coordinates. `padding` adds margin on every
    side (Tesseract reads a line better with some); with `mask` everything outside the
    polygon is painted background. Its features are the page image's pixel features
    (binarized…), as OCR-D's `image_from_segment` has them.
    """
    kept = [f for f in _split_features(page.comments) if f in PIXEL_FEATURES]
    base = replace(page, features=frozenset(kept), comments=",".join(kept))
    return crop(base, coords, padding=padding, mask=mask)


def image_to_png_bytes(image: Image.Image, dpi: float | None = None) -> bytes:
    """The image as PNG, with its DPI recorded when given.

    Greyscale and colour scans barely compress (paper grain is noise), so they get zlib's
    fastest level: a third of the time of the default for about a tenth more bytes.
    Bilevel images compress well and fast at the default level.
    """
    buffer = io.BytesIO()
    options: dict[str, object] = {"compress_level": 6 if image.mode == "1" else 1}
    if dpi:
        options["dpi"] = (dpi, dpi)
    image.save(buffer, format="PNG", **options)
    return buffer.getvalue()


def derived_image_output(
    job: PageJob, image: PageImage, *, file_grp: str, suffix: str
) -> OutputFile:
    """Write `image` as PNG (DPI kept) to `file_grp` as `<fileGrp>_<page>_<suffix>.png`.

    The returned OutputFile's href is what `AlternativeImage/@filename` must say.
    """
    return job.write_output(
        image_to_png_bytes(image.image, image.dpi),
        file_grp=file_grp,
        file_id=output_file_id(file_grp, job.page_id, suffix),
        mimetype="image/png",
        suffix=".png",
    )


def alternative_image(output: OutputFile, image: PageImage) -> AlternativeImage:
    """The AlternativeImage that references a derived image written by derived_image_output."""
    return AlternativeImage(output.href, image.comments)


def load_input_page(job: PageJob) -> PcGts:
    """The page's PAGE document from the first input fileGrp, or a new one for an image.

    A fileGrp holding both PAGE and images for the page is read through its PAGE (OCR-D's
    rule). A new PAGE names the image by its href relative to the workspace.
    """
    if not job.inputs:
        raise FormatError(f"page {job.page_id} has no input file")
    first_group = job.inputs[0].file_grp
    candidates = [file for file in job.inputs if file.file_grp == first_group]
    for file in candidates:
        if file.mimetype == MIMETYPE_PAGE:
            return parse_page(file.path)
    return _page_for_image(job, candidates[0])


def page_output(job: PageJob, pcgts: PcGts, *, file_grp: str) -> OutputFile:
    """Write the PAGE document as the page's output `<fileGrp>_<page>.xml`.

    Its pcGtsId becomes the METS file ID, as OCR-D's workspace validator demands.
    """
    file_id = output_file_id(file_grp, job.page_id)
    pcgts.pcgts_id = file_id
    pcgts.touch()
    return job.write_output(
        page_to_bytes(pcgts),
        file_grp=file_grp,
        file_id=file_id,
        mimetype=MIMETYPE_PAGE,
        suffix=".xml",
    )


# --- geometry ---------------------------------------------------------------------------


def _replay(
    image: PageImage, features: list[str], border: Coords | None, orientation: int, skew: float
) -> PageImage:
    """Rebuild the transform of an image that already has `features`, pixels untouched.

    Warns when the image's size is not the size those features predict: then it does not
    belong to this PAGE and coordinates on it will be off.
    """
    size: tuple[float, float] = image.original_size
    for feature in features:
        if feature == CROPPED:
            if border is None:
                LOG.warning("image %r says 'cropped' but the page has no Border", image.comments)
                continue
            x0, y0, x1, y1 = _pixel_bbox([_map_pixel(image.transform, p) for p in border.points])
            image = replace(image, transform=image.transform.then(Affine.translation(-x0, -y0)))
            size = (x1 - x0, y1 - y0)
        elif feature in ROTATED or feature == DESKEWED:
            angle = skew if feature == DESKEWED else int(feature.removeprefix("rotated-"))
            image, size = _turned(image, size, angle)
    width, height = size
    if abs(width - image.image.width) > _SIZE_SLACK or abs(height - image.image.height) > (
        _SIZE_SLACK
    ):
        LOG.warning(
            "image is %dx%d but its features %r predict %.0fx%.0f; coordinates may be off",
            image.image.width,
            image.image.height,
            image.comments,
            width,
            height,
        )
    return image


def _turned(
    image: PageImage, size: tuple[float, float], angle: float
) -> tuple[PageImage, tuple[int, int]]:
    """`image` with its transform rotated by `angle` as Pillow's rotate(expand=True) does a
    canvas of `size`; and the new canvas size."""
    width, height = size
    new_width, new_height = _rotated_canvas(width, height, angle)
    turn = Affine.rotation(angle, (width / 2, height / 2), (new_width / 2, new_height / 2))
    turned = replace(image, transform=image.transform.then(turn), angle=image.angle + angle)
    return turned, (new_width, new_height)


def _rotated_canvas(width: float, height: float, angle: float) -> tuple[int, int]:
    """The canvas Pillow's rotate(expand=True) gives a width x height image: its arithmetic,
    to the rounding, so that a replayed rotation matches the stored image to the pixel."""
    if angle % 180 == 0:
        return round(width), round(height)
    if angle % 90 == 0:
        return round(height), round(width)
    radians = -math.radians(angle)
    cos, sin = round(math.cos(radians), 15), round(math.sin(radians), 15)
    cx, cy = width / 2, height / 2
    corners = [(x - cx, y - cy) for x, y in ((0, 0), (width, 0), (width, height), (0, height))]
    xs = [cos * dx + sin * dy + cx for dx, dy in corners]
    ys = [-sin * dx + cos * dy + cy for dx, dy in corners]
    return (math.ceil(max(xs)) - math.floor(min(xs)), math.ceil(max(ys)) - math.floor(min(ys)))


def _transpose(image: PageImage, orientation: int) -> PageImage:
    method = {
        90: Image.Transpose.ROTATE_90,
        180: Image.Transpose.ROTATE_180,
        270: Image.Transpose.ROTATE_270,
    }[orientation]
    turned, _ = _turned(image, image.image.size, orientation)
    pixels = image.image.transpose(method)
    return replace(turned, image=pixels).with_image(pixels, f"rotated-{orientation}")


def _rotate(image: PageImage, skew: float) -> PageImage:
    pixels = image.image
    if skew:
        bilevel = pixels.mode in ("1", "P") or BINARIZED in image.features
        pixels = pixels.rotate(
            skew,
            resample=Image.Resampling.NEAREST if bilevel else Image.Resampling.BICUBIC,
            expand=True,
            fillcolor=_background(pixels),
        )
    # The canvas comes from the pixels, so replay and real rotation agree exactly.
    turn = Affine.rotation(
        skew, (image.image.width / 2, image.image.height / 2), (pixels.width / 2, pixels.height / 2)
    )
    turned = replace(
        image, image=pixels, transform=image.transform.then(turn), angle=image.angle + skew
    )
    return turned.with_image(pixels, DESKEWED)


def _map_pixel(transform: Affine, point: tuple[float, float]) -> tuple[float, float]:
    """Map a pixel position through `transform`, taking pixels by their centres."""
    x, y = transform(point[0] + 0.5, point[1] + 0.5)
    return x - 0.5, y - 0.5


def _pixel_bbox(points: Sequence[tuple[float, float]]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) with x1, y1 exclusive: the pixels the points cover."""
    xs, ys = [x for x, _ in points], [y for _, y in points]
    return _round(min(xs)), _round(min(ys)), _round(max(xs)) + 1, _round(max(ys)) + 1


def _cut(
    image: Image.Image,
    box: tuple[int, int, int, int],
    polygon: list[tuple[float, float]],
    mask: bool,
) -> Image.Image:
    x0, y0, x1, y1 = box
    width, height = max(1, x1 - x0), max(1, y1 - y0)
    inside = image.crop((max(0, x0), max(0, y0), min(image.width, x1), min(image.height, y1)))
    if inside.width == 0 or inside.height == 0:
        return Image.new(image.mode, (width, height), _background(image))
    background = _background(inside)
    result = Image.new(image.mode, (width, height), background)
    result.paste(inside, (max(0, x0) - x0, max(0, y0) - y0))
    if mask and len(polygon) >= 3:
        shape = Image.new("L", result.size, 0)
        ImageDraw.Draw(shape).polygon(
            [(x + 0.5, y + 0.5) for x, y in polygon], fill=255, outline=255
        )
        masked = Image.new(image.mode, result.size, background)
        masked.paste(result, mask=shape)
        return masked
    return result


def _background(image: Image.Image) -> int | tuple[int, ...]:
    """The median colour: the background of a page or segment (more paper than ink)."""
    median = ImageStat.Stat(image).median
    if image.mode == "1":
        return 255 if median[0] else 0
    return median[0] if len(median) == 1 else tuple(median)


def _round(value: float) -> int:
    return math.floor(value + 0.5)


def _clip(value: float, size: int) -> int:
    return min(max(_round(value), 0), max(size - 1, 0))


# --- choosing and reading files ---------------------------------------------------------


def _split_features(comments: str | None) -> list[str]:
    return [feature.strip() for feature in (comments or "").split(",") if feature.strip()]


def _choose_alternative(
    images: Sequence[AlternativeImage], selector: frozenset[str], excluded: frozenset[str]
) -> AlternativeImage | None:
    best: AlternativeImage | None = None
    best_richness = -1
    for candidate in images:
        features = set(_split_features(candidate.comments))
        if not selector <= features or features & excluded:
            continue
        richness = len(features - GEOMETRIC_FEATURES)
        if richness >= best_richness:
            best, best_richness = candidate, richness
    return best


def _original_facts(
    path: Path, width: int, height: int, *, fallback: Image.Image
) -> tuple[float, tuple[int, int]]:
    """DPI and size of the original, read from its header; the derived image's when absent."""
    try:
        info = inspect_image(path)
    except FormatError:
        LOG.warning("original image %s unreadable; DPI taken from the derived image", path)
        return image_dpi(fallback), (width or fallback.width, height or fallback.height)
    return info.dpi, (width or info.width, height or info.height)


def _page_for_image(job: PageJob, file: InputFile) -> PcGts:
    if not (file.mimetype.startswith("image/") or mimetype_for(file.path)):
        raise FormatError(
            f"input {file.file_id} of page {job.page_id} is {file.mimetype}, "
            "neither PAGE-XML nor an image"
        )
    info = inspect_image(file.path)
    return PcGts.new(job.href_of(file.path), info.width, info.height)
