"""Line character error rate of an OCR result against ground truth, both as PAGE.

Whole-page string comparisons punish reading order rather than recognition, so we compare
line by line: each ground-truth TextLine is matched to the OCR TextLine whose bounding box
overlaps it most; a ground-truth line no OCR line overlaps counts as wholly wrong. Texts
are compared after normalisation: Unicode NFC, long s (`ſ`) read as `s`, runs of
whitespace as one space, no leading or trailing whitespace.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from ocrswarm.formats.page import BBox, PcGts, TextLine

_WHITESPACE = re.compile(r"\s+")


@dataclass(frozen=True, slots=True)
class LineMatch:
    """One ground-truth line, the OCR line matched to it (None: no overlap), and their distance."""

    gt_id: str
    ocr_id: str | None
    gt_text: str
    ocr_text: str
    errors: int

    @property
    def characters(self) -> int:
        return len(self.gt_text)


@dataclass(frozen=True, slots=True)
class CerResult:
    """Edit operations over ground-truth characters, summed over every ground-truth line."""

    errors: int
    characters: int
    lines: tuple[LineMatch, ...]

    @property
    def cer(self) -> float:
        """The character error rate (0.0 for a page without ground-truth text)."""
        return self.errors / self.characters if self.characters else 0.0

    @property
    def unmatched(self) -> int:
        """How many ground-truth lines no OCR line overlaps."""
        return sum(1 for line in self.lines if line.ocr_id is None)

    def __add__(self, other: CerResult) -> CerResult:
        return CerResult(
            self.errors + other.errors, self.characters + other.characters, self.lines + other.lines
        )


def normalize(text: str) -> str:
    """Text as the comparison sees it: NFC, `ſ` as `s`, whitespace collapsed and trimmed."""
    text = unicodedata.normalize("NFC", text).replace("ſ", "s")
    return _WHITESPACE.sub(" ", text).strip()


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, each costing 1."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, 1):
        current = [i]
        for j, char_b in enumerate(b, 1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def line_cer(gt: PcGts, ocr: PcGts) -> CerResult:
    """Line CER of `ocr` against `gt` (both in the same image's coordinates)."""
    ocr_lines = _lines(ocr)
    ocr_boxes = [line.coords.bbox for line in ocr_lines]
    matches = []
    for gt_line in _lines(gt):
        gt_text = normalize(gt_line.text)
        if not gt_text:
            continue
        best = most_overlapping(gt_line.coords.bbox, ocr_boxes)
        if best is None:
            matches.append(LineMatch(gt_line.id, None, gt_text, "", len(gt_text)))
            continue
        ocr_line = ocr_lines[best]
        ocr_text = normalize(ocr_line.text)
        matches.append(
            LineMatch(gt_line.id, ocr_line.id, gt_text, ocr_text, edit_distance(gt_text, ocr_text))
        )
    return CerResult(
        sum(match.errors for match in matches),
        sum(match.characters for match in matches),
        tuple(matches),
    )


def _lines(pcgts: PcGts) -> list[TextLine]:
    return [line for region in pcgts.page.text_regions() for line in region.lines]


def most_overlapping(box: BBox, candidates: Sequence[BBox]) -> int | None:
    """Index of the candidate whose box shares the largest area with `box`; None for no overlap."""
    best, best_area = None, 0
    for index, candidate in enumerate(candidates):
        area = _overlap(box, candidate)
        if area > best_area:
            best, best_area = index, area
    return best


def _overlap(a: BBox, b: BBox) -> int:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return width * height if width > 0 and height > 0 else 0
