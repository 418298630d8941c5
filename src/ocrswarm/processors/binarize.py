"""`ocrd-swarm-binarize`: black text on white paper, by Otsu's or Sauvola's threshold.

Otsu picks one threshold for the whole image (or segment) from its histogram. Sauvola
computes one per pixel from the mean m and standard deviation s of the window around it,
T = m · (1 + k · (s / 128 − 1)), which survives uneven lighting, stains and bleed-through.
Window sums come from integral images (summed-area tables), so Sauvola costs the same for
any window size; the image is processed in horizontal strips to keep memory small.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from ocrswarm.formats.page import AlternativeImage, PcGts, Region, TextLine
from ocrswarm.processors.imaging import (
    BINARIZED,
    PageImage,
    derived_image_output,
    load_input_page,
    page_image,
    page_output,
    segment_image,
)
from ocrswarm.processors.processor import OutputFile, PageJob, Processor

Gray = npt.NDArray[np.uint8]
Mask = npt.NDArray[np.bool_]

# Sauvola's dynamic range of the standard deviation for 8-bit images.
SAUVOLA_R = 128.0
# Output rows per strip: bounds the integral images to a few megabytes per strip.
_STRIP_ROWS = 256


class BinarizeProcessor(Processor):
    """Binarize the page (or each region or line) and add the result as AlternativeImage."""

    executable = "ocrd-swarm-binarize"

    def process_page(self, job: PageJob) -> list[OutputFile]:
        pcgts = load_input_page(job)
        file_grp = job.output_file_grps[0]
        page = page_image(
            pcgts,
            job.workspace_dir,
            feature_filter=(BINARIZED,),
            dpi=self.parameters["dpi"],
        )
        level = self.parameters["operation_level"]
        if level == "page":
            binarized = page.with_image(self.binarize(page.image, page.dpi), BINARIZED)
            output = derived_image_output(job, binarized, file_grp=file_grp, suffix="BIN")
            pcgts.page.alternative_images.append(AlternativeImage(output.href, binarized.comments))
            outputs = [output]
        else:
            outputs = self._binarize_segments(job, pcgts, page, level, file_grp)
        return [*outputs, page_output(job, pcgts, file_grp=file_grp)]

    def binarize(self, image: Image.Image, dpi: float) -> Image.Image:
        """The bilevel (mode "1") image by this processor's method and parameters."""
        if image.mode == "1":
            return image.copy()
        gray = grayscale(image)
        if self.parameters["method"] == "otsu":
            ink = gray <= otsu_threshold(gray)
        else:
            window = self.parameters["window_size"] or default_window(dpi)
            ink = sauvola_ink(gray, window, self.parameters["k"])
        return Image.fromarray(~ink)

    def _binarize_segments(
        self, job: PageJob, pcgts: PcGts, page: PageImage, level: str, file_grp: str
    ) -> list[OutputFile]:
        segments: list[Region | TextLine] = (
            list(pcgts.page.all_regions())
            if level == "region"
            else [line for region in pcgts.page.text_regions() for line in region.lines]
        )
        outputs = []
        for segment in segments:
            image = segment_image(page, segment.coords)
            binarized = image.with_image(self.binarize(image.image, page.dpi), BINARIZED)
            output = derived_image_output(
                job, binarized, file_grp=file_grp, suffix=f"{segment.id}_BIN"
            )
            segment.alternative_images.append(AlternativeImage(output.href, binarized.comments))
            outputs.append(output)
        return outputs


def grayscale(image: Image.Image) -> Gray:
    """8-bit luminance as an array (see grayscale_image)."""
    return np.asarray(grayscale_image(image), dtype=np.uint8)


def grayscale_image(image: Image.Image) -> Image.Image:
    """8-bit luminance; transparency becomes white paper, 16-bit and float are rescaled."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        values = np.asarray(image, dtype=np.float64)
        low, high = float(values.min()), float(values.max())
        scale = 255.0 / (high - low) if high > low else 0.0
        return Image.fromarray(np.asarray((values - low) * scale, dtype=np.uint8))
    if "A" in image.getbands() or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        image = Image.alpha_composite(paper, rgba)
    return image if image.mode == "L" else image.convert("L")


def otsu_threshold(gray: Gray) -> int:
    """The grey level that best separates ink from paper (pixels <= it are ink)."""
    histogram = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight_dark = np.cumsum(histogram)
    weight_light = weight_dark[-1] - weight_dark
    sum_dark = np.cumsum(histogram * levels)
    mean_dark = np.divide(sum_dark, weight_dark, out=np.zeros(256), where=weight_dark > 0)
    mean_light = np.divide(
        sum_dark[-1] - sum_dark, weight_light, out=np.zeros(256), where=weight_light > 0
    )
    between = weight_dark * weight_light * (mean_dark - mean_light) ** 2
    # Every level in an empty gap between ink and paper separates equally well; take the
    # middle of the first such run, not its edge, which hugs the ink.
    best = np.flatnonzero(between >= between.max() * (1 - 1e-12))
    breaks = np.flatnonzero(np.diff(best) > 1)
    last = best[breaks[0]] if breaks.size else best[-1]
    return int(best[0] + last) // 2


def default_window(dpi: float) -> int:
    """Sauvola's window for `dpi`: a fifth of an inch, odd (61 pixels at 300 dpi).

    Wide enough to hold paper around the thick strokes of large type; measured on the
    Fraktur scans of kant_aufklaerung_1784, narrower windows hollow out strokes.
    """
    return odd_window(round(dpi / 5))


def odd_window(size: int) -> int:
    """`size` raised to the next odd number, at least 3."""
    return max(3, size | 1)


def sauvola_ink(gray: Gray, window: int, k: float) -> Mask:
    """Where Sauvola's threshold calls a pixel ink; windows are clipped at the borders."""
    radius = odd_window(int(window)) // 2
    height, width = gray.shape
    counts_x = _window_sums(np.ones((1, width), dtype=np.int64), radius)[0]
    ink = np.empty(gray.shape, dtype=np.bool_)
    for top in range(0, height, _STRIP_ROWS):
        bottom = min(height, top + _STRIP_ROWS)
        first, last = max(0, top - radius), min(height, bottom + radius)
        # Rows of the window around each output row, relative to `first`.
        rows = np.arange(top, bottom)
        upper = np.clip(rows - radius, 0, height) - first
        lower = np.clip(rows + radius + 1, 0, height) - first
        block = gray[first:last].astype(np.int64)
        count = (lower - upper)[:, None] * counts_x[None, :]
        total = _window_sums(_row_sums(block, upper, lower), radius)
        squares = _window_sums(_row_sums(block * block, upper, lower), radius)
        mean = total / count
        deviation = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
        threshold = mean * (1.0 + k * (deviation / SAUVOLA_R - 1.0))
        ink[top:bottom] = gray[top:bottom] <= threshold
    return ink


def _row_sums(
    values: npt.NDArray[np.int64], upper: npt.NDArray[np.int64], lower: npt.NDArray[np.int64]
) -> npt.NDArray[np.int64]:
    """For each output row, the column-wise sum of `values` over rows [upper, lower)."""
    cumulative = np.zeros((values.shape[0] + 1, values.shape[1]), dtype=np.int64)
    np.cumsum(values, axis=0, out=cumulative[1:])
    return cumulative[lower] - cumulative[upper]


def _window_sums(values: npt.NDArray[np.int64], radius: int) -> npt.NDArray[np.int64]:
    """Each row's sums over [x - radius, x + radius], clipped to the row: from a running sum.

    The running sum padded with its own first and last value lets both window ends be
    plain slices: no index arrays, which would cost more than the sums themselves.
    """
    cumulative = np.zeros((values.shape[0], values.shape[1] + 1), dtype=np.int64)
    np.cumsum(values, axis=1, out=cumulative[:, 1:])
    padded: npt.NDArray[np.int64] = np.pad(cumulative, ((0, 0), (radius, radius)), mode="edge")
    width = values.shape[1]
    return padded[:, 2 * radius + 1 : 2 * radius + 1 + width] - padded[:, :width]
