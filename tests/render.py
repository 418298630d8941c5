"""Render real page images with known text, so tests need no binary fixtures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont


def render_page(
    path: Path,
    lines: Sequence[str],
    *,
    size: tuple[int, int] = (1240, 1754),
    dpi: int = 300,
    font_size: int = 42,
    margin: int = 120,
) -> Path:
    """Draw `lines` black on white at `dpi`; the format follows the file suffix."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    y = margin
    for line in lines:
        draw.text((margin, y), line, fill=0, font=font)
        y += int(font_size * 1.6)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, dpi=(dpi, dpi))
    return path
