"""ocrd-swarm-segment: regions, lines and words from Tesseract's layout analysis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocrswarm.processors.annotate import AnnotatingProcessor, PageAnnotator, Settings
from ocrswarm.processors.tesseract import Level, Tesseract


class SegmentProcessor(AnnotatingProcessor):
    """Segment pages down to `lowest_level`, reading order included; no model needed.

    Existing text regions are kept (unless `overwrite_segments`) and only the levels they
    lack are added below them.
    """

    executable = "ocrd-swarm-segment"

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        super().__init__(parameters)
        p = self.parameters
        variables = {"textord_tabfind_find_tables": p["find_tables"], **p["tesseract_parameters"]}
        self.tesseract = Tesseract(None, variables=variables)
        self.annotator = PageAnnotator(
            self.tesseract,
            Settings(
                depth=Level.named(p["lowest_level"]),
                segment_from=Level.REGION,
                recognize=False,
                psm=int(p["psm"]),
                overwrite_segments=p["overwrite_segments"],
                box_padding=int(p["padding"]),
                shrink_polygons=p["shrink_polygons"],
            ),
        )
