"""ocrd-swarm-segment: regions, lines and words from Tesseract's layout analysis."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocrswarm.processors.annotate import PageAnnotator, Settings
from ocrswarm.processors.dummy import processing_step_item
from ocrswarm.processors.imaging import load_input_page, page_image, page_output
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.processor import OutputFile, PageJob, Processor
from ocrswarm.processors.tesseract import Level, Tesseract


class SegmentProcessor(Processor):
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

    def process_page(self, job: PageJob) -> list[OutputFile]:
        pcgts = load_input_page(job)
        image = page_image(pcgts, job.workspace_dir, dpi=self.parameters["dpi"])
        self.annotator.annotate(pcgts, image)
        step = tool_json(self.executable)["steps"][0]
        pcgts.metadata_extras.append(processing_step_item(self.executable, step, self.parameters))
        return [page_output(job, pcgts, file_grp=job.output_file_grps[0])]

    def close(self) -> None:
        self.tesseract.close()
