"""OUT/text.txt: the whole document's text, what most users want from `ocrswarm run`.

Written once at the end of a run, atomically, from the files the workflow produced: its
last plain-text fileGrp (OCR-D-TXT in the default workflow), else its last PAGE-XML one.
The METS is streamed (`read_outline`), not loaded: memory holds one file per page.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.metsstream import MetsOutline, read_outline
from ocrswarm.formats.page import parse_page
from ocrswarm.formats.text import page_to_text
from ocrswarm.formats.workspace import resolve_href

TEXT_FILE = "text.txt"
PAGE_SEPARATOR = "\f"  # between pages, as pdftotext and OCRmyPDF write it


def write_document_text(
    mets_path: Path, steps: Sequence[WorkflowStep], page_ids: Sequence[str]
) -> Path | None:
    """text.txt beside the METS: every page's text in page order, pages separated by a
    form feed.

    Taken from the last plain-text fileGrp the workflow wrote, else from its last PAGE-XML
    fileGrp; None (no file) when it wrote neither.
    """
    source = _text_source(read_outline(mets_path), steps)
    if source is None:
        return None
    grp, mimetype = source
    outline = read_outline(mets_path, [grp])
    directory = mets_path.parent
    texts = []
    for page_id in page_ids:
        file = next(iter(outline.files_of(page_id, grp, mimetype)), None)
        if file is None:
            texts.append("")
            continue
        path = resolve_href(directory, file.href)
        if mimetype == MIMETYPE_PAGE:
            texts.append(page_to_text(parse_page(path)))
        else:
            texts.append(path.read_bytes().decode("utf-8", errors="replace"))
    target = directory / TEXT_FILE
    write_atomic(target, PAGE_SEPARATOR.join(texts).encode("utf-8"))
    return target


def _text_source(outline: MetsOutline, steps: Sequence[WorkflowStep]) -> tuple[str, str] | None:
    outputs = [grp for step in steps for grp in step.output_file_grps]
    for mimetype in ("text/plain", MIMETYPE_PAGE):
        for grp in reversed(outputs):
            if mimetype in outline.mimetypes.get(grp, ()):
                return grp, mimetype
    return None
