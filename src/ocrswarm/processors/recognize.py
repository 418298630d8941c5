"""ocrd-swarm-recognize: text from Tesseract, in-process, with the model loaded once."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocrswarm.processors.annotate import PageAnnotator, Settings
from ocrswarm.processors.dummy import processing_step_item
from ocrswarm.processors.imaging import load_input_page, page_image, page_output
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.processor import OutputFile, PageJob, Processor
from ocrswarm.processors.tesseract import Level, Tesseract


class RecognizeProcessor(Processor):
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

    def process_page(self, job: PageJob) -> list[OutputFile]:
        pcgts = load_input_page(job)
        image = page_image(pcgts, job.workspace_dir, dpi=self.parameters["dpi"])
        self.annotator.annotate(pcgts, image)
        step = tool_json(self.executable)["steps"][0]
        pcgts.metadata_extras.append(processing_step_item(self.executable, step, self.parameters))
        return [page_output(job, pcgts, file_grp=job.output_file_grps[0])]

    def close(self) -> None:
        self.tesseract.close()
