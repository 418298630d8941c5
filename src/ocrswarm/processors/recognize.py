"""ocrd-swarm-recognize: text from Tesseract, in-process, with the model loaded once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocrswarm.processors.annotate import AnnotatingProcessor, PageAnnotator, Settings
from ocrswarm.processors.tesseract import Level, Tesseract


class RecognizeProcessor(AnnotatingProcessor):
    """Recognise text on region, line, word or glyph level; segment where nothing is segmented.

    A page without text regions is read whole, as the `tesseract` command reads it; existing
    segments are read one by one (see annotate.py).
    """

    executable = "ocrd-swarm-recognize"

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        super().__init__(parameters)
        p = self.parameters
        variables = dict(p["tesseract_parameters"])
        if p["char_whitelist"]:
            variables["tessedit_char_whitelist"] = p["char_whitelist"]
        if p["char_blacklist"]:
            variables["tessedit_char_blacklist"] = p["char_blacklist"]
        self.tesseract = Tesseract(p["model"], oem=p["oem"], variables=variables)
        segmentation = p["segmentation_level"]
        self.annotator = PageAnnotator(
            self.tesseract,
            Settings(
                depth=Level.named(p["textequiv_level"]),
                segment_from=None if segmentation == "none" else Level.named(segmentation),
                recognize=True,
                psm=int(p["psm"]),
                overwrite_segments=p["overwrite_segments"],
                overwrite_text=p["overwrite_text"],
                image_padding=int(p["padding"]),
                shrink_polygons=p["shrink_polygons"],
            ),
        )
