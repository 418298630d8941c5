from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image, features

from ocrswarm.errors import ImageError, UnsafeInputError
from ocrswarm.formats.images import (
    DEFAULT_DPI,
    MAX_PIXELS,
    check_single_page,
    image_dpi,
    inspect_image,
    mimetype_for,
    open_image,
    suffix_for,
)
from tests.render import render_page


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A tiny PNG that declares `width` x `height` pixels: a decompression bomb in 80 bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )
    return path


def write_multipage_tiff(path: Path, pages: int = 3) -> Path:
    frames = [Image.new("L", (60, 80), 255) for _ in range(pages)]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    return path


@pytest.mark.parametrize(
    ("name", "mimetype"),
    [
        ("a.tif", "image/tiff"),
        ("a.TIFF", "image/tiff"),
        ("a.png", "image/png"),
        ("a.JPG", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("a.jp2", "image/jp2"),
        ("a.xml", None),
        ("a", None),
        ("tif", None),
    ],
)
def test_mimetype_by_suffix(name: str, mimetype: str | None) -> None:
    assert mimetype_for(name) == mimetype
    assert mimetype_for(Path("dir") / name) == mimetype


def test_suffix_for_mimetype() -> None:
    assert suffix_for("image/tiff") == ".tif"
    assert suffix_for("image/png") == ".png"
    assert suffix_for("text/plain") is None


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg", ".jp2"])
def test_open_each_supported_format(tmp_path: Path, suffix: str) -> None:
    if suffix == ".jp2" and not features.check("jpg_2000"):
        pytest.skip("Pillow built without JPEG 2000")
    path = render_page(tmp_path / f"page{suffix}", ["Hello"], size=(300, 200))
    image = open_image(path)
    assert image.size == (300, 200)
    assert image.getpixel((0, 0)) == 255  # decoded, not just the header
    info = check_single_page(path)
    assert (info.width, info.height, info.frames) == (300, 200, 1)
    assert info.mimetype == mimetype_for(path)


def test_content_decides_the_mimetype_not_the_suffix(tmp_path: Path) -> None:
    path = tmp_path / "really_a_png.tif"
    Image.new("L", (20, 20), 255).save(path, format="PNG")
    assert inspect_image(path).mimetype == "image/png"


@pytest.mark.parametrize(("dpi", "expected"), [(300, 300.0), (150, 150.0), (600, 600.0)])
def test_dpi_from_metadata(tmp_path: Path, dpi: int, expected: float) -> None:
    path = render_page(tmp_path / "page.png", ["x"], size=(100, 100), dpi=dpi)
    assert image_dpi(open_image(path)) == pytest.approx(expected, abs=0.1)


@pytest.mark.parametrize("suffix", [".tif", ".png"])
@pytest.mark.parametrize("dpi", [72, 96, 10, 5000])
def test_implausible_dpi_means_default(tmp_path: Path, dpi: int, suffix: str) -> None:
    path = render_page(tmp_path / f"page{suffix}", ["x"], size=(100, 100), dpi=dpi)
    assert image_dpi(open_image(path)) == DEFAULT_DPI


def test_missing_dpi_means_default(tmp_path: Path) -> None:
    path = tmp_path / "page.png"
    Image.new("L", (50, 50), 255).save(path)
    assert "dpi" not in Image.open(path).info
    assert image_dpi(open_image(path)) == DEFAULT_DPI


def test_tiff_resolution_in_centimetres(tmp_path: Path) -> None:
    path = tmp_path / "page.tif"
    Image.new("L", (50, 50), 255).save(
        path, resolution_unit=3, x_resolution=157.48, y_resolution=157.48
    )
    assert image_dpi(open_image(path)) == pytest.approx(400.0, abs=0.1)


def test_tiff_resolution_without_unit_means_default(tmp_path: Path) -> None:
    path = tmp_path / "page.tif"
    Image.new("L", (50, 50), 255).save(path, resolution_unit=1, x_resolution=400, y_resolution=400)
    assert image_dpi(open_image(path)) == DEFAULT_DPI


def test_multipage_tiff_is_refused(tmp_path: Path) -> None:
    path = write_multipage_tiff(tmp_path / "book.tif")
    with pytest.raises(ImageError, match=r"book\.tif has 3 pages"):
        check_single_page(path)
    with pytest.raises(ImageError, match=r"book\.tif has 3 pages"):
        open_image(path)
    assert inspect_image(path).frames == 3


@pytest.mark.parametrize("side", [100_000, 12_000])
def test_decompression_bomb_is_refused_from_its_header(tmp_path: Path, side: int) -> None:
    # 100,000^2 trips Pillow's DecompressionBombError, 12,000^2 only its warning.
    path = write_png_header(tmp_path / "bomb.png", side, side)
    assert path.stat().st_size < 200
    for action in (inspect_image, open_image, check_single_page):
        with pytest.raises(UnsafeInputError, match=r"bomb\.png"):
            action(path)


def test_pillows_bomb_warning_is_an_error_even_under_a_higher_cap(tmp_path: Path) -> None:
    path = write_png_header(tmp_path / "bomb.png", 12_000, 12_000)
    assert MAX_PIXELS < 12_000 * 12_000
    with pytest.raises(UnsafeInputError, match="too large"):
        open_image(path, max_pixels=10**9)


def test_a_lower_cap_is_honoured(tmp_path: Path) -> None:
    path = render_page(tmp_path / "page.png", ["x"], size=(100, 100))
    with pytest.raises(UnsafeInputError, match="100 x 100 pixels, more than the limit of 9999"):
        open_image(path, max_pixels=9_999)
    assert open_image(path, max_pixels=10_000).size == (100, 100)


def test_unreadable_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    with pytest.raises(ImageError, match=r"notes\.png"):
        open_image(path)
    with pytest.raises(ImageError, match=r"notes\.png"):
        check_single_page(path)


def test_missing_file_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ImageError, match=r"gone\.tif does not exist"):
        open_image(tmp_path / "gone.tif")


def test_truncated_image_fails_on_decoding(tmp_path: Path) -> None:
    path = render_page(tmp_path / "page.png", ["x" * 20], size=(400, 400))
    path.write_bytes(path.read_bytes()[:300])
    inspect_image(path)  # the header is intact
    with pytest.raises(ImageError, match=r"page\.png"):
        open_image(path)


def test_formats_beyond_page_images_are_not_opened(tmp_path: Path) -> None:
    path = tmp_path / "animated.png"
    Image.new("P", (20, 20)).save(path, format="GIF")
    with pytest.raises(ImageError, match=r"animated\.png"):
        open_image(path)
