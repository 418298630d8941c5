"""The export formats (ALTO, hOCR, plain text) and how to write them into a workspace.

One registry so that the CLI, the export processor and the engine's default workflow agree
on each format's MIME type, file suffix and default fileGrp.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ocrswarm.errors import FormatError, UsageError
from ocrswarm.formats.alto import page_to_alto
from ocrswarm.formats.hocr import page_to_hocr
from ocrswarm.formats.mets import MIMETYPE_PAGE, MetsFile
from ocrswarm.formats.page import PcGts, parse_page
from ocrswarm.formats.pageselect import select_pages
from ocrswarm.formats.text import page_to_text
from ocrswarm.formats.workspace import Workspace


@dataclass(frozen=True, slots=True)
class ExportFormat:
    name: str
    mimetype: str
    suffix: str
    file_grp: str
    render: Callable[[PcGts], bytes]


EXPORT_FORMATS: dict[str, ExportFormat] = {
    "alto": ExportFormat("alto", "application/alto+xml", ".xml", "OCR-D-ALTO", page_to_alto),
    "hocr": ExportFormat("hocr", "text/vnd.hocr+html", ".html", "OCR-D-HOCR", page_to_hocr),
    "text": ExportFormat(
        "text", "text/plain", ".txt", "OCR-D-TXT", lambda pcgts: page_to_text(pcgts).encode()
    ),
}


def last_page_group(workspace: Workspace) -> str:
    """The fileGrp most recently added that holds PAGE-XML: the usual input of an export."""
    groups = {file.file_grp for file in workspace.mets.find_files(mimetype=MIMETYPE_PAGE)}
    for group in reversed(workspace.mets.file_groups):
        if group in groups:
            return group
    raise FormatError(f"{workspace.mets_path} has no fileGrp with PAGE-XML files to export")


def export_workspace(
    workspace: Workspace,
    format_name: str,
    *,
    input_file_grp: str | None = None,
    output_file_grp: str | None = None,
    page_selection: str | None = None,
    overwrite: bool = False,
) -> list[MetsFile]:
    """Render every selected page's PAGE file of `input_file_grp` and register the results.

    The METS is saved once at the end; an existing output fileGrp is an error unless
    `overwrite`, in which case files of the same ID are replaced.
    """
    try:
        fmt = EXPORT_FORMATS[format_name]
    except KeyError:
        known = ", ".join(EXPORT_FORMATS)
        raise UsageError(f"unknown export format {format_name!r} (known: {known})") from None
    source = input_file_grp or last_page_group(workspace)
    if source not in workspace.mets.file_groups:
        raise FormatError(f"input fileGrp {source!r} does not exist in {workspace.mets_path}")
    target = output_file_grp or fmt.file_grp
    if target in workspace.mets.file_groups and not overwrite:
        raise FormatError(f"output fileGrp {target!r} exists; use --overwrite to replace it")
    written = []
    for page_id in select_pages(page_selection, workspace.mets.page_ids):
        inputs = workspace.mets.find_files(file_grp=source, page_id=page_id, mimetype=MIMETYPE_PAGE)
        if not inputs:
            continue
        pcgts = parse_page(workspace.resolve(inputs[0]))
        written.append(
            workspace.add_file(
                fmt.render(pcgts),
                file_grp=target,
                file_id=f"{target}_{page_id}",
                mimetype=fmt.mimetype,
                page_id=page_id,
                suffix=fmt.suffix,
                replace=overwrite,
            )
        )
    if not written:
        raise FormatError(f"no PAGE-XML files in fileGrp {source!r} for the selected pages")
    workspace.save()
    return written
