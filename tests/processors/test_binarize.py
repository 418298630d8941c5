from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import (
    Coords,
    PcGts,
    TextLine,
    TextRegion,
    page_to_bytes,
    parse_page,
    validate_page,
)
from ocrswarm.processors.binarize import (
    BinarizeProcessor,
    default_window,
    grayscale,
    odd_window,
    otsu_threshold,
    sauvola_ink,
)
from ocrswarm.processors.imaging import page_image
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.processors.processor import InputFile, OutputFile, PageJob
from tests.render import render_page

LINES = ["Binarization keeps the ink", "and whitens the paper around", "every letter of the page."]
FONT_SIZE, MARGIN = 42, 120


def binarizer(**parameters: Any) -> BinarizeProcessor:
    return BinarizeProcessor(validate_parameters(tool_json("ocrd-swarm-binarize"), parameters))


def run(workspace: Path, file: InputFile, **parameters: Any) -> list[OutputFile]:
    job = PageJob(workspace, "PHYS_0001", [file], ["OCR-D-BIN"])
    with binarizer(**parameters) as processor:
        return processor.process_page(job)


def rendered(workspace: Path) -> tuple[InputFile, Path]:
    path = render_page(workspace / "OCR-D-IMG" / "page.png", LINES, size=(1240, 600))
    return InputFile("OCR-D-IMG", "OCR-D-IMG_0001", "image/png", path), path


def brute_force_sauvola(gray: np.ndarray[Any, Any], window: int, k: float) -> np.ndarray[Any, Any]:
    radius = window // 2
    height, width = gray.shape
    ink = np.zeros(gray.shape, dtype=bool)
    for y in range(height):
        for x in range(width):
            area = gray[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
            mean, deviation = area.mean(), area.std()
            ink[y, x] = gray[y, x] <= mean * (1 + k * (deviation / 128 - 1))
    return ink


@pytest.mark.parametrize(("window", "k"), [(3, 0.5), (15, 0.34), (61, 0.2), (301, 0.34)])
def test_sauvola_equals_the_definition(window: int, k: float) -> None:
    gray = np.random.default_rng(window).integers(0, 256, size=(40, 70), dtype=np.uint8)
    gray[10:20, 5:60] //= 4  # some structure besides noise
    assert np.array_equal(sauvola_ink(gray, window, k), brute_force_sauvola(gray, window, k))


def test_sauvola_strips_join_seamlessly() -> None:
    gray = np.random.default_rng(1).integers(0, 256, size=(700, 50), dtype=np.uint8)
    assert np.array_equal(sauvola_ink(gray, 9, 0.3), brute_force_sauvola(gray, 9, 0.3))


def test_otsu_threshold_separates_two_populations() -> None:
    rng = np.random.default_rng(0)
    ink = rng.normal(40, 10, 3000)
    paper = rng.normal(200, 15, 20000)
    gray = np.clip(np.concatenate([ink, paper]), 0, 255).astype(np.uint8)
    threshold = otsu_threshold(gray)
    assert gray[:3000].max() <= threshold < gray[3000:].min()
    gap_middle = (int(gray[:3000].max()) + int(gray[3000:].min())) // 2
    assert abs(threshold - gap_middle) <= 1
    assert otsu_threshold(np.array([0, 255, 255], dtype=np.uint8)) == 127
    assert otsu_threshold(np.full(10, 7, dtype=np.uint8)) == 127  # one grey level: no crash


def test_windows_follow_the_resolution() -> None:
    assert default_window(300) == 61
    assert default_window(600) == 121
    assert default_window(72) == 15
    assert odd_window(60) == 61 and odd_window(61) == 61 and odd_window(0) == 3


def test_grayscale_of_modes() -> None:
    rgba = Image.new("RGBA", (4, 2), (0, 0, 0, 0))
    assert grayscale(rgba).tolist() == [[255] * 4] * 2  # transparent is paper
    deep = Image.fromarray(np.array([[0, 1000], [2000, 4000]], dtype=np.uint16))
    assert grayscale(deep).tolist() == [[0, 63], [127, 255]]
    assert grayscale(Image.new("RGB", (1, 1), (255, 255, 255))).tolist() == [[255]]


@pytest.mark.parametrize("method", ["otsu", "sauvola"])
def test_binarize_a_rendered_page(tmp_path: Path, method: str) -> None:
    file, path = rendered(tmp_path)
    outputs = run(tmp_path, file, method=method)
    assert [output.mimetype for output in outputs] == ["image/png", MIMETYPE_PAGE]
    image_out, page_out = outputs
    assert image_out.file_id == "OCR-D-BIN_PHYS_0001_BIN"
    assert page_out.file_id == "OCR-D-BIN_PHYS_0001"
    assert {output.file_grp for output in outputs} == {"OCR-D-BIN"}

    binarized = Image.open(tmp_path / image_out.href)
    assert binarized.mode == "1"
    assert binarized.info["dpi"] == pytest.approx((300, 300), abs=0.01)
    original = np.asarray(Image.open(path).convert("L"))
    black = ~np.asarray(binarized)
    assert black[original < 64].mean() > 0.95  # the ink stays ink
    assert black[original > 250].mean() < 0.005  # the paper is white
    assert black.mean() > 0.01  # there is text at all

    assert validate_page(tmp_path / page_out.href) == []
    pcgts = parse_page(tmp_path / page_out.href)
    assert pcgts.page.image_filename == "OCR-D-IMG/page.png"
    [alternative] = pcgts.page.alternative_images
    assert (alternative.filename, alternative.comments) == (image_out.href, "binarized")
    chosen = page_image(pcgts, tmp_path)
    assert chosen.features == {"binarized"} and chosen.image.mode == "1"


def shaded(path: Path) -> Path:
    """The rendered page under light that fades from dim (left) to bright (right)."""
    gray = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    light = np.linspace(0.3, 1.0, gray.shape[1])[None, :]
    Image.fromarray((gray * light).astype(np.uint8)).save(path, dpi=(300, 300))
    return path


def test_sauvola_survives_uneven_light_where_otsu_fails(tmp_path: Path) -> None:
    file, path = rendered(tmp_path)
    clean = np.asarray(Image.open(path).convert("L"))
    shaded(path)

    def black_paper_and_ink(method: str) -> tuple[float, float]:
        image_out = run(tmp_path, file, method=method)[0]
        black = ~np.asarray(Image.open(tmp_path / image_out.href))
        return black[clean > 250].mean(), black[clean < 64].mean()

    paper, ink = black_paper_and_ink("sauvola")
    assert paper < 0.01 and ink > 0.9
    otsu_paper, _ = black_paper_and_ink("otsu")
    assert otsu_paper > 0.1  # a single threshold blackens the dim side


def test_binarize_lines_and_regions(tmp_path: Path) -> None:
    rendered(tmp_path)
    lines = [
        TextLine(f"l{n}", Coords.from_bbox((100, top - 8, 1000, top + 50)))
        for n, top in enumerate(MARGIN + round(FONT_SIZE * 1.6) * i for i in range(len(LINES)))
    ]
    region = TextRegion("r0", Coords.from_bbox((90, 100, 1010, 350)), lines=lines)
    pcgts = PcGts.new("OCR-D-IMG/page.png", 1240, 600)
    pcgts.page.regions.append(region)
    page_path = tmp_path / "OCR-D-SEG" / "page.xml"
    page_path.parent.mkdir()
    page_path.write_bytes(page_to_bytes(pcgts))
    file = InputFile("OCR-D-SEG", "OCR-D-SEG_0001", MIMETYPE_PAGE, page_path)

    outputs = run(tmp_path, file, operation_level="line", method="otsu")
    assert [output.file_id for output in outputs] == [
        "OCR-D-BIN_PHYS_0001_l0_BIN",
        "OCR-D-BIN_PHYS_0001_l1_BIN",
        "OCR-D-BIN_PHYS_0001_l2_BIN",
        "OCR-D-BIN_PHYS_0001",
    ]
    result = parse_page(tmp_path / outputs[-1].href)
    assert validate_page(tmp_path / outputs[-1].href) == []
    assert result.page.alternative_images == []
    for line, output in zip(result.page.text_regions()[0].lines, outputs, strict=False):
        [alternative] = line.alternative_images
        assert alternative.filename == output.href and alternative.comments == "binarized"
        image = Image.open(tmp_path / output.href)
        assert image.mode == "1" and image.size == (901, 59)
        assert 0.01 < (~np.asarray(image)).mean() < 0.5

    outputs = run(tmp_path, file, operation_level="region")
    assert [output.file_id for output in outputs] == [
        "OCR-D-BIN_PHYS_0001_r0_BIN",
        "OCR-D-BIN_PHYS_0001",
    ]
    assert Image.open(tmp_path / outputs[0].href).size == (921, 251)


def test_binarize_a_real_scan(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "kant_aufklaerung_1784" / "data"
    for name in ("OCR-D-IMG/INPUT_0017.tif", "OCR-D-GT-PAGE/PAGE_0017_PAGE.xml"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(source / name, tmp_path / name)
    page_path = tmp_path / "OCR-D-GT-PAGE" / "PAGE_0017_PAGE.xml"
    file = InputFile("OCR-D-GT-PAGE", "PAGE_0017", MIMETYPE_PAGE, page_path)
    image_out, page_out = run(tmp_path, file)
    assert validate_page(tmp_path / page_out.href) == []
    pcgts = parse_page(tmp_path / page_out.href)
    assert pcgts.page.border is not None
    x0, y0, x1, y1 = pcgts.page.border.bbox
    binarized = Image.open(tmp_path / image_out.href)
    assert binarized.size == (x1 - x0 + 1, y1 - y0 + 1)  # cropped to the Border first
    assert pcgts.page.alternative_images[-1].comments == "cropped,binarized"
    # Inside the text lines, ink is a minority but present; the margins are nearly clean.
    ink = ~np.asarray(binarized)
    image = page_image(pcgts, tmp_path)
    for line in pcgts.page.text_regions()[0].lines[:5]:
        (lx0, ly0), (lx1, ly1) = image.from_original([line.coords.bbox[:2], line.coords.bbox[2:]])
        assert 0.03 < ink[ly0:ly1, lx0:lx1].mean() < 0.5
