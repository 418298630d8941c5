"""`ocrd-swarm-deskew`: straighten pages (or regions) and turn them upright.

The skew comes from projection profiles: text lines are sharp peaks in the histogram of ink
rows only when projected along their own angle. Each candidate angle costs one pass over
the ink pixels of a page shrunk to ~150 dpi (a bincount, no image rotation), first on a
coarse grid over ±max_angle, then finely around the best. Quarter turns (0/90/180/270)
come from Tesseract's orientation and script detection (OSD) when its `osd` model is
installed; without it they are skipped with a warning.

PAGE @orientation is the clockwise angle that straightens the page, so content turned
counter-clockwise by 2° gets @orientation 2 and an image rotated by −2° (OCR-D's reading).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np
import numpy.typing as npt
from PIL import Image

from ocrswarm.formats.page import AlternativeImage, PcGts, Region, TextRegion
from ocrswarm.processors.binarize import default_window, grayscale_image, sauvola_ink
from ocrswarm.processors.imaging import (
    DESKEWED,
    ROTATED,
    PageImage,
    crop,
    derived_image_output,
    load_input_page,
    page_image,
    page_output,
    rotate,
    segment_image,
)
from ocrswarm.processors.processor import OutputFile, PageJob, Processor
from ocrswarm.processors.tessdata import ModelNotFoundError, find_model

LOG = logging.getLogger(__name__)

# Resolution the skew is measured at: enough for 0.1° on a page, cheap to project.
SKEW_DPI = 150.0
# Resolution orientation detection runs at, at most.
OSD_DPI = 300.0
# At most this many ink pixels are projected (an evenly spaced sample beyond).
_MAX_INK_POINTS = 250_000
_COARSE_STEP = 0.25
_FINE_STEP = 0.02
# A segment with fewer ink pixels than this has no measurable skew.
_MIN_INK_POINTS = 50


class DeskewProcessor(Processor):
    """Annotate @orientation and add a deskewed AlternativeImage, per page or per region."""

    executable = "ocrd-swarm-deskew"

    def __init__(self, parameters: Any) -> None:
        super().__init__(parameters)
        self._osd: Any = None
        self._osd_checked = False

    def process_page(self, job: PageJob) -> list[OutputFile]:
        pcgts = load_input_page(job)
        file_grp = job.output_file_grps[0]
        if self.parameters["operation_level"] == "page":
            outputs = self._deskew_page(job, pcgts, file_grp)
        else:
            outputs = self._deskew_regions(job, pcgts, file_grp)
        return [*outputs, page_output(job, pcgts, file_grp=file_grp)]

    def close(self) -> None:
        if self._osd is not None:
            self._osd.End()
            self._osd = None

    def _deskew_page(self, job: PageJob, pcgts: PcGts, file_grp: str) -> list[OutputFile]:
        page = pcgts.page
        image = page_image(
            pcgts,
            job.workspace_dir,
            feature_filter=(DESKEWED, *ROTATED),
            dpi=self.parameters["dpi"],
        )
        turn = self._upright_turn(image) if self.parameters["detect_orientation"] else 0
        upright = image.image.transpose(_TRANSPOSITIONS[turn]) if turn else image.image
        skew = estimate_skew(upright, image.dpi, self.parameters["max_angle"])
        deskewed = rotate(image, turn - skew)
        page.orientation = normalized_orientation(-deskewed.angle)
        # Images rotated by an earlier @orientation no longer fit the PAGE.
        page.alternative_images = [
            alternative
            for alternative in page.alternative_images
            if not _is_rotated(alternative.comments)
        ]
        output = derived_image_output(job, deskewed, file_grp=file_grp, suffix="DESKEW")
        page.alternative_images.append(AlternativeImage(output.href, deskewed.comments))
        return [output]

    def _deskew_regions(self, job: PageJob, pcgts: PcGts, file_grp: str) -> list[OutputFile]:
        image = page_image(pcgts, job.workspace_dir, dpi=self.parameters["dpi"])
        outputs = []
        for region in pcgts.page.all_regions():
            if not isinstance(region, TextRegion) and region.kind != "TableRegion":
                continue
            cut = segment_image(image, region.coords)
            skew = estimate_skew(cut.image, image.dpi, self.parameters["max_angle"])
            # OCR-D: a rotated segment image is cut again to its polygon's box.
            deskewed = crop(rotate(cut, -skew), region.coords)
            _set_orientation(region, normalized_orientation(-deskewed.angle))
            region.alternative_images = [
                alternative
                for alternative in region.alternative_images
                if not _is_rotated(alternative.comments)
            ]
            output = derived_image_output(
                job, deskewed, file_grp=file_grp, suffix=f"{region.id}_DESKEW"
            )
            region.alternative_images.append(AlternativeImage(output.href, deskewed.comments))
            outputs.append(output)
        return outputs

    def _upright_turn(self, image: PageImage) -> int:
        """The counter-clockwise quarter turn (0, 90, 180, 270) that makes the page upright."""
        api = self._osd_api()
        if api is None:
            return 0
        pixels, dpi = image.image, image.dpi
        factor = int(dpi // OSD_DPI)
        if factor >= 2:  # OSD is faster, and no less sure, at 300 dpi than at 600
            pixels, dpi = grayscale_image(pixels).reduce(factor), dpi / factor
        api.SetImage(pixels)
        api.SetSourceResolution(round(dpi))
        result = api.DetectOrientationScript()
        if not result or math.isnan(result["orient_conf"]):
            LOG.warning("orientation detection found no text; page taken as upright")
            return 0
        if result["orient_conf"] < self.parameters["min_orientation_confidence"]:
            LOG.info(
                "orientation %d° ignored: confidence %.2f is below %s",
                result["orient_deg"],
                result["orient_conf"],
                self.parameters["min_orientation_confidence"],
            )
            return 0
        # OSD reports the clockwise turn the content has; undoing it is that much anticlockwise.
        return int(result["orient_deg"]) % 360

    def _osd_api(self) -> Any:
        """Tesseract set up for OSD, created once; None (warned once) without the osd model."""
        if not self._osd_checked:
            self._osd_checked = True
            try:
                directory, languages = find_model("osd")
            except ModelNotFoundError as error:
                LOG.warning("orientation detection skipped: %s", str(error).splitlines()[0])
                return None
            import tesserocr  # type: ignore[import-untyped]

            self._osd = tesserocr.PyTessBaseAPI(
                path=str(directory), lang="+".join(languages), psm=tesserocr.PSM.OSD_ONLY
            )
        return self._osd


def estimate_skew(image: Image.Image, dpi: float, max_angle: float) -> float:
    """The angle in degrees, counter-clockwise, by which the text lines of `image` are turned.

    Rotating the image by minus this angle straightens it. 0 for an image without text.
    """
    ink = _ink_points(image, dpi)
    if ink is None or max_angle <= 0:
        return 0.0
    ys, xs = ink
    coarse = np.arange(-max_angle, max_angle + _COARSE_STEP / 2, _COARSE_STEP)
    best = _best_angle(ys, xs, coarse)
    fine = np.arange(best - _COARSE_STEP, best + _COARSE_STEP + _FINE_STEP / 2, _FINE_STEP)
    best = _best_angle(ys, xs, fine[np.abs(fine) <= max_angle])
    return round(best, 2) + 0.0  # + 0.0 turns -0.0 into 0.0


def normalized_orientation(angle: float) -> float:
    """`angle` in PAGE's range for @orientation, (-180, 180], rounded to 0.01°."""
    return round(180 - (180 - angle) % 360, 2) + 0.0


def _ink_points(
    image: Image.Image, dpi: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
    """Row and column of the ink pixels at SKEW_DPI, centred; None when there is no text."""
    gray = grayscale_image(image)
    factor = int(dpi // SKEW_DPI)
    if factor >= 2:
        gray = gray.reduce(factor)
    scale = gray.width / image.width
    pixels = np.asarray(gray, dtype=np.uint8)
    # Sauvola turns dark scan margins into unstructured speckle that adds no peaks.
    ink = sauvola_ink(pixels, default_window(dpi * scale), 0.34)
    ys, xs = np.nonzero(ink)
    if len(ys) < _MIN_INK_POINTS:
        return None
    step = max(1, len(ys) // _MAX_INK_POINTS)
    ys, xs = ys[::step], xs[::step]
    # Each pixel becomes a point somewhere inside it: on the bare pixel grid, 0° (where the
    # grid lines up exactly) would score higher than the true angle of a slightly skewed page.
    jitter = np.random.default_rng(0).uniform(-0.5, 0.5, size=(2, len(ys)))
    return ys + jitter[0] - pixels.shape[0] / 2, xs + jitter[1] - pixels.shape[1] / 2


def _best_angle(
    ys: npt.NDArray[np.float64], xs: npt.NDArray[np.float64], angles: npt.NDArray[np.float64]
) -> float:
    """The angle whose row projection is sharpest (largest squared differences of bins)."""
    scores = [_sharpness(ys, xs, float(angle)) for angle in angles]
    return float(angles[int(np.argmax(scores))])


def _sharpness(ys: npt.NDArray[np.float64], xs: npt.NDArray[np.float64], angle: float) -> float:
    radians = math.radians(angle)
    # A line turned counter-clockwise by `angle` keeps y·cos + x·sin constant (y points down).
    rows = ys * math.cos(radians) + xs * math.sin(radians)
    rows -= rows.min()
    # Each pixel is shared between its two nearest rows: the score then varies smoothly with
    # the angle instead of jumping where the pixel grid happens to line up (at 0°).
    lower = rows.astype(np.int64)
    upper_share = rows - lower
    bins = np.bincount(lower, weights=1.0 - upper_share, minlength=int(lower.max()) + 2)
    bins[1:] += np.bincount(lower, weights=upper_share, minlength=len(bins) - 1)
    return float(np.square(np.diff(bins)).sum())


_TRANSPOSITIONS = {
    90: Image.Transpose.ROTATE_90,
    180: Image.Transpose.ROTATE_180,
    270: Image.Transpose.ROTATE_270,
}


def _is_rotated(comments: str | None) -> bool:
    features = {feature.strip() for feature in (comments or "").split(",")}
    return bool(features & {DESKEWED, *ROTATED})


def _set_orientation(region: Region, orientation: float) -> None:
    if isinstance(region, TextRegion):
        region.orientation = orientation
    else:
        region.attributes["orientation"] = f"{orientation:g}"
