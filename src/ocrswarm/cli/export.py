"""`ocrswarm export`: ALTO, hOCR or plain text from a workspace's PAGE-XML."""

from __future__ import annotations

from pathlib import Path

import click

from ocrswarm.formats.exports import EXPORT_FORMATS, export_workspace
from ocrswarm.formats.workspace import Workspace


@click.command()
@click.argument("mets", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-f", "--format", "format_name", type=click.Choice(list(EXPORT_FORMATS)), required=True
)
@click.option("-I", "--input-file-grp", help="PAGE-XML fileGrp (default: the last one).")
@click.option("-O", "--output-file-grp", help="Output fileGrp (default: OCR-D-ALTO/-HOCR/-TXT).")
@click.option("-g", "--page-id", "page_selection", help="Pages: A,B or A..B or //regex.")
@click.option("--overwrite", is_flag=True, help="Replace an existing output fileGrp's files.")
def export(
    mets: Path,
    format_name: str,
    input_file_grp: str | None,
    output_file_grp: str | None,
    page_selection: str | None,
    overwrite: bool,
) -> None:
    """Export PAGE-XML to ALTO v4, hOCR or plain text, one file per page, registered in the METS."""
    workspace = Workspace.open(mets)
    written = export_workspace(
        workspace,
        format_name,
        input_file_grp=input_file_grp,
        output_file_grp=output_file_grp,
        page_selection=page_selection,
        overwrite=overwrite,
    )
    click.echo(
        f"{workspace.mets_path}: {len(written)} {format_name} file(s) in {written[0].file_grp}"
    )
