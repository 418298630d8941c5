"""ocrd-swarm-export: ALTO, hOCR or plain text from PAGE-XML, one file per page.

The formats themselves live in formats/ (shared with `ocrswarm export`); this processor only
makes them a step a workflow can run page by page under the engine.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocrswarm.errors import FormatError, UsageError
from ocrswarm.formats.exports import EXPORT_FORMATS, ExportFormat
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import parse_page
from ocrswarm.processors.processor import OutputFile, PageJob, Processor, output_file_id


class ExportProcessor(Processor):
    """Render each page's PAGE-XML in the format of the `format` parameter."""

    executable = "ocrd-swarm-export"

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        super().__init__(parameters)
        name = self.parameters.get("format", "alto")
        try:
            self.format: ExportFormat = EXPORT_FORMATS[name]
        except (KeyError, TypeError):
            known = ", ".join(EXPORT_FORMATS)
            raise UsageError(f"unknown export format {name!r} (known: {known})") from None

    def process_page(self, job: PageJob) -> list[OutputFile]:
        source = next((file for file in job.inputs if file.mimetype == MIMETYPE_PAGE), None)
        if source is None:
            found = ", ".join(f"{file.file_grp}: {file.mimetype}" for file in job.inputs)
            raise FormatError(
                f"page {job.page_id}: export needs PAGE-XML input, found only {found or 'nothing'}"
            )
        file_grp = job.output_file_grps[0]
        return [
            job.write_output(
                self.format.render(parse_page(source.path)),
                file_grp=file_grp,
                file_id=output_file_id(file_grp, job.page_id),
                mimetype=self.format.mimetype,
                suffix=self.format.suffix,
            )
        ]
