from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw

from ocrswarm.errors import FormatError, UnsafeInputError
from ocrswarm.formats.images import DEFAULT_DPI
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import (
    AlternativeImage,
    Coords,
    PcGts,
    page_to_bytes,
    parse_page,
    validate_page,
)
from ocrswarm.processors.imaging import (
    Affine,
    PageImage,
    derived_image_output,
    load_input_page,
    page_image,
    page_output,
    rotate,
    segment_image,
    split_angle,
)
from ocrswarm.processors.processor import InputFile, PageJob
from tests.render import render_page

# Dots drawn on a test page: where they are in the original frame.
DOTS = [(100, 50), (700, 500), (400, 300), (20, 580), (790, 10)]


def dotted_page(path: Path, size: tuple[int, int] = (801, 600), dpi: int = 300) -> Path:
    """A white page with a 3x3 black dot centred on each of DOTS."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    for x, y in DOTS:
        draw.rectangle((x - 1, y - 1, x + 1, y + 1), fill=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, dpi=(dpi, dpi))
    return path


def dot_centres(image: Image.Image, near: list[tuple[int, int]]) -> list[tuple[float, float]]:
    """The centroid of the dark pixels within 6 pixels of each point of `near`."""
    pixels = np.asarray(image.convert("L"), dtype=np.float64)
    centres = []
    for x, y in near:
        x0, y0 = max(0, x - 6), max(0, y - 6)
        window = 255.0 - pixels[y0 : y + 7, x0 : x + 7]
        rows, cols = np.indices(window.shape)
        total = window.sum()
        assert total > 0, f"no dot near {(x, y)}"
        centres.append((x0 + (cols * window).sum() / total, y0 + (rows * window).sum() / total))
    return centres


def page_with(tmp_path: Path, *alternatives: tuple[str, str]) -> PcGts:
    """A PAGE for a dotted original `OCR-D-IMG/page.png` with AlternativeImages (href, comments).

    The n-th AlternativeImage is plain grey of level 10·n, so tests can tell which was chosen.
    """
    dotted_page(tmp_path / "OCR-D-IMG" / "page.png")
    pcgts = PcGts.new("OCR-D-IMG/page.png", 801, 600)
    for number, (href, comments) in enumerate(alternatives, start=1):
        Image.new("L", (801, 600), 10 * number).save(tmp_path / href)
        pcgts.page.alternative_images.append(AlternativeImage(href, comments))
    return pcgts


def test_affine_inverse_and_composition() -> None:
    maps = [
        Affine.translation(-40, 26),
        Affine.rotation(2.5, (400, 300), (412, 318)),
        Affine.rotation(90, (10, 20), (20, 10)),
    ]
    composed = maps[0].then(maps[1]).then(maps[2])
    for x, y in [(0.0, 0.0), (123.5, -7.0), (800.0, 600.0)]:
        step = (x, y)
        for affine in maps:
            step = affine(*step)
        assert composed(x, y) == pytest.approx(step)
        assert composed.inverse()(*composed(x, y)) == pytest.approx((x, y))


@pytest.mark.parametrize(
    ("angle", "expected"),
    [
        (0, (0, 0)),
        (2.5, (0, 2.5)),
        (-1.5, (0, -1.5)),
        (91.2, (90, 1.2)),
        (-90, (270, 0)),
        (180, (180, 0)),
        (-135.5, (180, 44.5)),
        (44.9, (0, 44.9)),
        (45.1, (90, -44.9)),
    ],
)
def test_split_angle(angle: float, expected: tuple[int, float]) -> None:
    orientation, skew = split_angle(angle)
    assert orientation == expected[0]
    assert skew == pytest.approx(expected[1])


@pytest.mark.parametrize("angle", [2.5, -1.5, 30.0, 91.2, 180.0, -90.0, 270.4])
def test_rotation_maps_points_where_the_pixels_went(tmp_path: Path, angle: float) -> None:
    original = Image.open(dotted_page(tmp_path / "dots.png"))
    page = PageImage(original, frozenset(), 300.0, 0.0, original.size)
    turned = rotate(page, angle)
    predicted = turned.from_original(DOTS)
    for (px, py), (cx, cy) in zip(predicted, dot_centres(turned.image, predicted), strict=True):
        assert abs(px - cx) <= 1 and abs(py - cy) <= 1
    back = turned.to_original(predicted)
    for (x, y), (bx, by) in zip(DOTS, back, strict=True):
        assert abs(x - bx) <= 1 and abs(y - by) <= 1
    assert turned.angle == pytest.approx(sum(split_angle(angle)))
    assert "deskewed" in turned.features
    assert turned.comments.endswith("deskewed")


def test_original_image_without_alternatives(tmp_path: Path) -> None:
    image = page_image(page_with(tmp_path), tmp_path)
    assert image.features == frozenset() and image.comments == ""
    assert image.image.size == image.original_size == (801, 600)
    assert image.to_original([(5, 7)]) == [(5, 7)]
    assert image.dpi == pytest.approx(300, abs=0.01)  # PNG stores dots per metre


def test_choose_alternative_image_by_features(tmp_path: Path) -> None:
    pcgts = page_with(
        tmp_path,
        ("OCR-D-IMG/bin.png", "binarized"),
        ("OCR-D-IMG/gray.png", "grayscale_normalized"),
        ("OCR-D-IMG/bin2.png", "binarized,despeckled"),
        ("OCR-D-IMG/bin3.png", "binarized"),
    )

    names = {10: "bin", 20: "gray", 30: "bin2", 40: "bin3", 255: "original"}

    def chosen(selector: list[str] | None = None, excluded: list[str] | None = None) -> str:
        image = page_image(
            pcgts, tmp_path, feature_selector=selector or (), feature_filter=excluded or ()
        )
        return names[image.image.getpixel((0, 0))]  # type: ignore[index]

    assert chosen() == "bin2"  # the richest
    assert chosen(["binarized"]) == "bin2"
    assert chosen(excluded=["despeckled"]) == "bin3"  # the latest among equals
    assert chosen(["grayscale_normalized"]) == "gray"
    assert chosen(excluded=["binarized", "grayscale_normalized"]) == "original"
    assert chosen(["dewarped"]) == "original"


def test_alternative_image_features_and_dpi_of_the_original(tmp_path: Path) -> None:
    pcgts = page_with(tmp_path, ("OCR-D-IMG/bin.png", " binarized , despeckled"))
    dotted_page(tmp_path / "OCR-D-IMG" / "page.png", dpi=600)
    image = page_image(pcgts, tmp_path)
    assert image.features == {"binarized", "despeckled"}
    assert image.dpi == pytest.approx(600, abs=0.01)  # the original's, not the PNG's
    assert page_image(pcgts, tmp_path, dpi=150).dpi == 150


@pytest.mark.parametrize("dpi", [None, 1, 50, 100_000])
def test_missing_or_absurd_dpi_is_300(tmp_path: Path, dpi: int | None) -> None:
    path = tmp_path / "page.png"
    image = Image.new("L", (50, 40), 255)
    if dpi is None:
        image.save(path)
    else:
        image.save(path, dpi=(dpi, dpi))
    assert page_image(PcGts.new("page.png", 50, 40), tmp_path).dpi == DEFAULT_DPI


@pytest.mark.parametrize("href", ["../../etc/passwd", "/etc/passwd", "OCR-D-IMG/../../x.png"])
def test_hostile_hrefs_are_refused(tmp_path: Path, href: str) -> None:
    workspace = tmp_path / "ws"
    pcgts = page_with(workspace)
    pcgts.page.alternative_images.append(AlternativeImage(href, "binarized"))
    with pytest.raises(UnsafeInputError, match="outside the workspace"):
        page_image(pcgts, workspace)
    pcgts.page.alternative_images.clear()
    pcgts.page.image_filename = href
    with pytest.raises(UnsafeInputError):
        page_image(pcgts, workspace)


def test_symlink_out_of_the_workspace_is_refused(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    pcgts = page_with(workspace)
    secret = dotted_page(tmp_path / "secret.png")
    os.symlink(secret, workspace / "OCR-D-IMG" / "link.png")
    pcgts.page.image_filename = "OCR-D-IMG/link.png"
    with pytest.raises(UnsafeInputError):
        page_image(pcgts, workspace)


def test_remote_image_is_not_fetched(tmp_path: Path) -> None:
    pcgts = page_with(tmp_path)
    pcgts.page.image_filename = "http://127.0.0.1:9/page.png"
    with pytest.raises(FormatError, match="does not fetch"):
        page_image(pcgts, tmp_path)


def test_orientation_is_applied_unless_filtered(tmp_path: Path) -> None:
    pcgts = page_with(tmp_path)
    pcgts.page.orientation = 2.5  # content turned 2.5° anticlockwise: straighten clockwise
    image = page_image(pcgts, tmp_path)
    assert image.features == {"deskewed"}
    assert image.angle == pytest.approx(-2.5)
    expected = rotate(page_image(pcgts, tmp_path, feature_filter=["deskewed"]), -2.5)
    assert image.image.size == expected.image.size
    assert image.from_original(DOTS) == expected.from_original(DOTS)
    predicted = image.from_original(DOTS)
    for (px, py), (cx, cy) in zip(predicted, dot_centres(image.image, predicted), strict=True):
        assert abs(px - cx) <= 1 and abs(py - cy) <= 1
    unrotated = page_image(pcgts, tmp_path, feature_filter=["deskewed"])
    assert unrotated.features == frozenset() and unrotated.image.size == (801, 600)


def test_stored_deskewed_image_is_replayed_not_rotated_again(tmp_path: Path) -> None:
    pcgts = page_with(tmp_path)
    pcgts.page.orientation = -91.5
    rotated = rotate(page_image(pcgts, tmp_path, feature_filter=["deskewed", "rotated-90"]), 91.5)
    assert rotated.comments == "rotated-90,deskewed"
    rotated.image.save(tmp_path / "OCR-D-IMG" / "deskewed.png")
    pcgts.page.alternative_images.append(
        AlternativeImage("OCR-D-IMG/deskewed.png", rotated.comments)
    )
    image = page_image(pcgts, tmp_path)
    assert image.image.size == rotated.image.size
    assert image.transform == pytest.approx(rotated.transform)
    assert image.features == {"rotated-90", "deskewed"}


def test_border_crops_and_cropped_images_replay_the_offset(tmp_path: Path) -> None:
    pcgts = page_with(tmp_path)
    pcgts.page.border = Coords.from_bbox((15, 5, 720, 520))
    cropped = page_image(pcgts, tmp_path)
    assert cropped.features == {"cropped"}
    assert cropped.image.size == (706, 516)
    assert cropped.from_original([(100, 50)]) == [(85, 45)]
    assert cropped.to_original([(0, 0), (705, 515)]) == [(15, 5), (720, 520)]
    centre = dot_centres(cropped.image, [(85, 45)])[0]
    assert centre == pytest.approx((85, 45), abs=0.01)
    cropped.image.save(tmp_path / "OCR-D-IMG" / "crop.png")
    pcgts.page.alternative_images.append(AlternativeImage("OCR-D-IMG/crop.png", "cropped"))
    replayed = page_image(pcgts, tmp_path)
    assert replayed.transform == cropped.transform
    assert replayed.image.size == (706, 516)


def test_crop_then_deskew(tmp_path: Path) -> None:
    pcgts = page_with(tmp_path)
    pcgts.page.border = Coords.from_bbox((15, 5, 790, 590))
    pcgts.page.orientation = -3.0
    image = page_image(pcgts, tmp_path)
    assert image.comments == "cropped,deskewed"
    inside = [(100, 50), (700, 500), (400, 300)]
    predicted = image.from_original(inside)
    for (px, py), (cx, cy) in zip(predicted, dot_centres(image.image, predicted), strict=True):
        assert abs(px - cx) <= 1 and abs(py - cy) <= 1


def test_segment_image_with_padding_and_mask(tmp_path: Path) -> None:
    page = page_image(page_with(tmp_path, ("OCR-D-IMG/bin.png", "binarized")), tmp_path)
    page = page.with_image(Image.open(dotted_page(tmp_path / "dots.png")).convert("L"))
    triangle = Coords([(90, 40), (130, 40), (90, 80)])
    segment = segment_image(page, triangle, padding=5)
    assert segment.image.size == (51, 51)
    assert segment.to_original([(0, 0), (50, 50)]) == [(85, 35), (135, 85)]
    assert segment.from_original([(100, 50)]) == [(15, 15)]
    assert segment.image.getpixel((15, 15)) == 0  # the dot, inside the polygon
    assert segment.image.getpixel((45, 45)) == 255  # outside: background
    assert segment.features == {"binarized"}
    square = segment_image(page, Coords.from_bbox((695, 495, 705, 505)), mask=False)
    assert square.image.size == (11, 11) and square.image.getpixel((5, 5)) == 0


def test_segment_image_drops_geometric_features(tmp_path: Path) -> None:
    pcgts = page_with(tmp_path, ("OCR-D-IMG/bin.png", "binarized"))
    pcgts.page.orientation = 1.0
    page = page_image(pcgts, tmp_path)
    assert page.comments == "binarized,deskewed"
    segment = segment_image(page, Coords.from_bbox((10, 10, 60, 60)))
    assert segment.comments == "binarized" and segment.angle == page.angle


def test_segment_beyond_the_image_is_background(tmp_path: Path) -> None:
    page = page_image(page_with(tmp_path), tmp_path)
    segment = segment_image(page, Coords.from_bbox((780, 580, 810, 620)))
    assert segment.image.size == (31, 41)
    assert segment.image.getpixel((30, 40)) == 255


def make_job(tmp_path: Path, image: Path, grp: str = "OCR-D-IMG") -> PageJob:
    file = InputFile(grp, f"{grp}_0001", "image/png", image)
    return PageJob(tmp_path, "PHYS_0001", [file], ["OUT"])


def test_load_input_page_from_image_and_from_page(tmp_path: Path) -> None:
    image = render_page(tmp_path / "OCR-D-IMG" / "page 1.png", ["Hello"], size=(300, 200))
    job = make_job(tmp_path, image)
    pcgts = load_input_page(job)
    assert pcgts.page.image_filename == "OCR-D-IMG/page 1.png"
    assert (pcgts.page.image_width, pcgts.page.image_height) == (300, 200)
    output = page_output(job, pcgts, file_grp="OUT")
    assert output.file_id == "OUT_PHYS_0001" and output.mimetype == MIMETYPE_PAGE
    assert validate_page(tmp_path / output.href) == []
    page_input = InputFile("OUT", output.file_id, MIMETYPE_PAGE, tmp_path / output.href)
    mixed = PageJob(tmp_path, "PHYS_0001", [job.inputs[0], page_input], ["X"])
    assert load_input_page(mixed).page.image_filename == "OCR-D-IMG/page 1.png"
    read = load_input_page(PageJob(tmp_path, "PHYS_0001", [page_input], ["X"]))
    assert page_to_bytes(read) == (tmp_path / output.href).read_bytes()


def test_load_input_page_refuses_other_files(tmp_path: Path) -> None:
    text = tmp_path / "a.txt"
    text.write_text("hello")
    job = PageJob(tmp_path, "P1", [InputFile("G", "G_1", "text/plain", text)], ["OUT"])
    with pytest.raises(FormatError, match="neither PAGE-XML nor an image"):
        load_input_page(job)
    with pytest.raises(FormatError, match="no input file"):
        load_input_page(PageJob(tmp_path, "P1", [], ["OUT"]))


def test_derived_image_output_keeps_the_dpi(tmp_path: Path) -> None:
    image = render_page(tmp_path / "OCR-D-IMG" / "p.png", ["Hi"], size=(120, 80), dpi=400)
    job = make_job(tmp_path, image)
    page = page_image(load_input_page(job), tmp_path)
    output = derived_image_output(job, page, file_grp="OUT", suffix="BIN")
    assert (output.file_id, output.href, output.mimetype) == (
        "OUT_PHYS_0001_BIN",
        "OUT/OUT_PHYS_0001_BIN.png",
        "image/png",
    )
    written = Image.open(tmp_path / output.href)
    assert written.format == "PNG" and written.size == (120, 80)
    assert written.info["dpi"] == pytest.approx((400, 400), abs=0.1)


def test_page_xml_from_shared_data_round_trips(shared_data: Path) -> None:
    workspace = shared_data / "bebel_frau_1879"
    pcgts = parse_page(workspace / "GT-PAGE" / "bebel_frau_1879_0146.xml")
    image = page_image(pcgts, workspace)
    assert "cropped" in image.features  # the GT has a Border
    assert image.dpi == 600
    line = pcgts.page.text_regions()[0].lines[0]
    segment = segment_image(image, line.coords)
    x0, y0, x1, y1 = line.coords.bbox
    assert segment.image.size == (x1 - x0 + 1, y1 - y0 + 1)
    assert segment.to_original([(0, 0)]) == [(x0, y0)]
    assert image.to_original(image.from_original(line.coords.points)) == line.coords.points
