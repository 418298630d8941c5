"""OUT/text.txt: the whole document's text, what most users want from `ocrswarm run`.

Written once at the end of a run, atomically, from the files the workflow produced: its
last plain-text fileGrp (OCR-D-TXT in the default workflow), else its last PAGE-XML one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import parse_page
from ocrswarm.formats.text import page_to_text
from ocrswarm.formats.workspace import Workspace

TEXT_FILE = "text.txt"
PAGE_SEPARATOR = "\f"  # between pages, as pdftotext and OCRmyPDF write it


def write_document_text(
    workspace: Workspace, steps: Sequence[WorkflowStep], page_ids: Sequence[str]
) -> Path | None:
    """OUT/text.txt: every page's text in page order, pages separated by a form feed.

    Taken from the last plain-text fileGrp the workflow wrote, else from its last PAGE-XML
    fileGrp; None (no file) when it wrote neither.
    """
    source = _text_source(workspace, steps)
    if source is None:
        return None
    grp, mimetype = source
    texts = []
    for page_id in page_ids:
        file = next(
            (
                f
                for f in workspace.mets.find_files(file_grp=grp, page_id=page_id)
                if f.mimetype == mimetype
            ),
            None,
        )
        if file is None:
            texts.append("")
            continue
        path = workspace.resolve(file)
        if mimetype == MIMETYPE_PAGE:
            texts.append(page_to_text(parse_page(path)))
        else:
            texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    target = workspace.directory / TEXT_FILE
    write_atomic(target, PAGE_SEPARATOR.join(texts).encode("utf-8"))
    return target


def _text_source(workspace: Workspace, steps: Sequence[WorkflowStep]) -> tuple[str, str] | None:
    outputs = [grp for step in steps for grp in step.output_file_grps]
    for mimetype in ("text/plain", MIMETYPE_PAGE):
        for grp in reversed(outputs):
            if workspace.mets.find_files(file_grp=grp, mimetype=mimetype):
                return grp, mimetype
    return None
