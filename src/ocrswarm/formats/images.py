"""Open page images safely, and read the two facts OCR needs from them: pixels and DPI.

Only TIFF, PNG, JPEG and JPEG 2000 are opened (Pillow's other decoders, PostScript among
them, are attack surface a scan never needs). An image declaring more than `MAX_PIXELS`
pixels is refused from its header, before a byte is decoded: a tiny file can declare a
gigapixel canvas. A multi-page TIFF is refused because OCR-D wants one image per page.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

from ocrswarm.errors import ImageError, UnsafeInputError

IMAGE_MIMETYPES: dict[str, str] = {
    ".tif": "image/tiff",
    ".tiff": "image/tiff",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".jp2": "image/jp2",
    ".j2k": "image/jp2",
    ".jpx": "image/jpx",
}
_SUFFIXES: dict[str, str] = {
    "image/tiff": ".tif",
    "image/png": ".png",
    "image/jpeg": ".jpg",
    "image/jp2": ".jp2",
    "image/jpx": ".jpx",
}
# Pillow format name -> MIME type. MPO is how Pillow reads a camera JPEG carrying a preview.
_FORMAT_MIMETYPES: dict[str, str] = {
    "TIFF": "image/tiff",
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "JPEG2000": "image/jp2",
}
_PILLOW_FORMATS = ("TIFF", "PNG", "JPEG", "JPEG2000")
# Formats whose extra frames are extra pages; an MPO's second frame is only a preview.
_MULTI_PAGE_FORMATS = frozenset({"TIFF", "PNG"})

DEFAULT_DPI = 300
# 72 dpi (and 96) is what software writes when it knows nothing; Pillow itself fills in
# 72 for unreadable EXIF, and PNG's dots per metre turn 72 into 72.009. No real scan is that
# coarse, so anything below 97 dpi counts as missing.
MIN_PLAUSIBLE_DPI = 97
MAX_PLAUSIBLE_DPI = 2400
# Pillow's own default cap (about 9,459 x 9,459; an A3 page at 600 dpi is 70 Mpx).
MAX_PIXELS = 89_478_485


@dataclass(frozen=True, slots=True)
class ImageInfo:
    """What an image header says, read without decoding the pixels."""

    width: int
    height: int
    format: str
    mimetype: str
    frames: int
    dpi: float


def mimetype_for(path: Path | str) -> str | None:
    """The image MIME type its suffix promises, or None for a file that is no image."""
    return IMAGE_MIMETYPES.get(Path(path).suffix.lower())


def suffix_for(mimetype: str) -> str | None:
    """The usual file suffix for an image MIME type (`image/tiff` -> `.tif`)."""
    return _SUFFIXES.get(mimetype)


def inspect_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> ImageInfo:
    """Read the header of `path`: size, format, frame count, DPI. Cheap: no pixel is decoded.

    Raises UnsafeInputError for an image over `max_pixels`, ImageError when unreadable.
    """
    with _open_file(path) as stream:
        image = _open_image(stream, path, max_pixels)
        frames = _frame_count(image, path)
        mimetype = _FORMAT_MIMETYPES.get(image.format or "") or mimetype_for(path) or ""
        return ImageInfo(
            width=image.width,
            height=image.height,
            format=image.format or "",
            mimetype=mimetype,
            frames=frames,
            dpi=image_dpi(image),
        )


def check_single_page(path: Path) -> ImageInfo:
    """Refuse a multi-page image (ImageError), reading only its header; returns the header."""
    info = inspect_image(path)
    require_single_page(info, path)
    return info


def require_single_page(info: ImageInfo, path: Path) -> None:
    """Raise ImageError when the header `info` (of `path`) says the image has several pages."""
    if info.frames > 1:
        raise _multi_page_error(path, info.frames)


def open_image(path: Path, *, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode the single page image at `path`.

    Raises UnsafeInputError for an image over `max_pixels` (Pillow's own
    DecompressionBombWarning counts as a refusal too), ImageError for an unreadable or
    multi-page image. `max_pixels` can only lower Pillow's cap, never raise it.
    """
    with _open_file(path) as stream:
        image = _open_image(stream, path, max_pixels)
        frames = _frame_count(image, path)
        if frames > 1:
            raise _multi_page_error(path, frames)
        try:
            image.load()
        except Exception as error:  # Pillow's decoders raise many types on corrupt data
            raise ImageError(f"cannot decode image {path}: {error}") from None
    return image


def image_dpi(image: Image.Image) -> float:
    """The horizontal resolution in dots per inch, or DEFAULT_DPI when missing or implausible.

    Pillow already converts dots per centimetre (TIFF, PNG, JPEG) to inches; a TIFF with no
    absolute unit only has `resolution`, which says nothing about inches and is ignored.
    """
    for value in _dpi_values(image.info.get("dpi")):
        if MIN_PLAUSIBLE_DPI <= value <= MAX_PLAUSIBLE_DPI:
            return value
    return float(DEFAULT_DPI)


def _dpi_values(dpi: Any) -> list[float]:
    candidates = dpi if isinstance(dpi, tuple | list) else (dpi,)
    values = []
    for candidate in candidates:
        try:
            value = float(candidate)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(value):
            values.append(value)
    return values


def _open_file(path: Path) -> Any:
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ImageError(f"image {path} does not exist") from None
    except OSError as error:
        raise ImageError(f"cannot read image {path}: {error.strerror or error}") from None


def _open_image(stream: Any, path: Path, max_pixels: int) -> Image.Image:
    """Parse the header and enforce the pixel cap before anything is decoded."""
    try:
        # Turns Pillow's bomb warning into an exception and silences its notes on corrupt
        # metadata (the image opens or we raise). Warning filters are process-wide, so under
        # threads this may miss; the explicit size check below never does.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=_PILLOW_FORMATS)
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as error:
        raise UnsafeInputError(f"image {path} is too large to open safely: {error}") from None
    except Exception as error:  # Pillow's parsers raise many types on corrupt headers
        raise ImageError(f"cannot read image {path}: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        raise UnsafeInputError(
            f"image {path} declares {width} x {height} pixels, more than the limit of "
            f"{max_pixels}; refusing it as a possible decompression bomb"
        )
    return image


def _frame_count(image: Image.Image, path: Path) -> int:
    if image.format not in _MULTI_PAGE_FORMATS:
        return 1
    try:
        return int(getattr(image, "n_frames", 1))
    except Exception as error:  # walking a corrupt TIFF's directory chain can fail any way
        raise ImageError(f"cannot read the pages of image {path}: {error}") from None


def _multi_page_error(path: Path, frames: int) -> ImageError:
    return ImageError(
        f"image {path} has {frames} pages; OCR-D needs one image per page, split it first"
    )
