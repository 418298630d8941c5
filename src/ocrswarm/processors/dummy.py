"""ocrd-swarm-dummy (also offered as ocrd-dummy): pass pages through unchanged.

Behaves like OCR-D's ocrd-dummy, so workflows written for it run unchanged and the overhead
of the machinery around a processor can be measured on its own: a PAGE input is written to
the output fileGrp with a new pcGtsId and a processing-step MetadataItem; an image input
gets a new empty PAGE referencing it, and with `copy_files` the image itself is copied into
the output fileGrp first (the PAGE then references the copy, as OCR-D does).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from lxml import etree

from ocrswarm import __version__
from ocrswarm.errors import FormatError
from ocrswarm.formats.images import inspect_image, suffix_for
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import PAGE_NS_2019, PcGts, RawElement, page_to_bytes, parse_page
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.processor import (
    InputFile,
    OutputFile,
    PageJob,
    Processor,
    output_file_id,
)


class DummyProcessor(Processor):
    """Copy each page's first input to the output fileGrp."""

    executable = "ocrd-swarm-dummy"

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        super().__init__(parameters)
        self.copy_files = bool(self.parameters.get("copy_files", False))
        self.step = tool_json(self.executable)["steps"][0]

    def process_page(self, job: PageJob) -> list[OutputFile]:
        if not job.inputs:
            raise FormatError(f"page {job.page_id}: no input file")
        source = job.inputs[0]
        file_grp = job.output_file_grps[0]
        if source.mimetype == MIMETYPE_PAGE:
            pcgts = parse_page(source.path)
            return [self._write_page(job, pcgts, output_file_id(file_grp, job.page_id))]
        outputs = []
        image_href = job.href_of(source.path)
        page_file_id = output_file_id(file_grp, job.page_id)
        if self.copy_files:
            copy = self._copy_image(job, source, page_file_id)
            outputs.append(copy)
            image_href = copy.href
            page_file_id = output_file_id(file_grp, job.page_id, "PAGE")
        info = inspect_image(source.path)
        pcgts = PcGts.new(image_href, info.width, info.height, creator=f"ocrswarm {__version__}")
        outputs.append(self._write_page(job, pcgts, page_file_id))
        return outputs

    def _copy_image(self, job: PageJob, source: InputFile, file_id: str) -> OutputFile:
        suffix = suffix_for(source.mimetype) or source.path.suffix.lower()
        return job.write_output(
            source.path.read_bytes(),
            file_grp=job.output_file_grps[0],
            file_id=file_id,
            mimetype=source.mimetype,
            suffix=suffix,
        )

    def _write_page(self, job: PageJob, pcgts: PcGts, file_id: str) -> OutputFile:
        pcgts.pcgts_id = file_id
        pcgts.metadata_extras.append(
            processing_step_item(self.executable, self.step, self.parameters)
        )
        pcgts.touch()
        return job.write_output(
            page_to_bytes(pcgts),
            file_grp=job.output_file_grps[0],
            file_id=file_id,
            mimetype=MIMETYPE_PAGE,
            suffix=".xml",
        )


def processing_step_item(executable: str, step: str, parameters: Mapping[str, Any]) -> RawElement:
    """The PAGE MetadataItem OCR-D processors add to record themselves and their parameters."""
    item = etree.Element(f"{{{PAGE_NS_2019}}}MetadataItem", nsmap={None: PAGE_NS_2019})
    item.set("type", "processingStep")
    item.set("name", step)
    item.set("value", executable)
    labels = etree.SubElement(item, f"{{{PAGE_NS_2019}}}Labels")
    labels.set("externalModel", "ocrd-tool")
    labels.set("externalId", "parameters")
    for name, value in parameters.items():
        label = etree.SubElement(labels, f"{{{PAGE_NS_2019}}}Label")
        label.set("value", value if isinstance(value, str) else json.dumps(value))
        label.set("type", name)
    versions = etree.SubElement(item, f"{{{PAGE_NS_2019}}}Labels")
    versions.set("externalModel", "ocrd-tool")
    versions.set("externalId", "version")
    version = etree.SubElement(versions, f"{{{PAGE_NS_2019}}}Label")
    version.set("value", __version__)
    version.set("type", executable)
    return RawElement.from_element(item)
