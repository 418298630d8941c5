"""`ocrswarm workspace …`: create, inspect, validate, pack and unpack OCR-D workspaces."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ocrswarm.errors import FormatError
from ocrswarm.formats.ocrdzip import pack_workspace, unpack_bag, validate_bag
from ocrswarm.formats.workspace import Workspace

console = Console(highlight=False, markup=False)


def say(label: str, style: str, message: str) -> None:
    """Print `label: message`, with the message taken literally (no rich markup)."""
    console.print(Text.assemble((f"{label}: ", style), message), soft_wrap=True)


@click.group()
def workspace() -> None:
    """Create, inspect, validate, pack and unpack OCR-D workspaces (METS + files)."""


@workspace.command()
@click.argument("images", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path),
    help="Create the workspace here (images are hard-linked or copied into OCR-D-IMG/). "
    "Default: write mets.xml into IMAGES itself.",
)
def init(images: Path, output: Path | None) -> None:
    """Create a workspace from a folder of images, one physical page per image in natural order."""
    ws = Workspace.from_images(images, output)
    for warning in ws.warnings:
        say("warning", "yellow", warning)
    console.print(f"{ws.mets_path}: {len(ws.mets.page_ids)} pages in fileGrp OCR-D-IMG")


@workspace.command()
@click.argument("mets", type=click.Path(exists=True, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
def info(mets: Path, as_json: bool) -> None:
    """Show a workspace's identifier, pages, fileGrps and agents."""
    ws = Workspace.open(mets)
    per_group = Counter(file.file_grp for file in ws.mets.files)
    summary = {
        "mets": str(ws.mets_path),
        "identifier": ws.mets.unique_identifier,
        "pages": len(ws.mets.page_ids),
        "files": sum(per_group.values()),
        "file_groups": {group: per_group.get(group, 0) for group in ws.mets.file_groups},
        "agents": [agent.name for agent in ws.mets.agents],
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    console.print(Text(str(ws.mets_path), style="bold"))
    console.print(f"identifier: {summary['identifier'] or '-'}")
    console.print(f"pages: {summary['pages']}, files: {summary['files']}")
    table = Table("fileGrp", "files")
    for group, count in per_group.items():
        table.add_row(group, str(count))
    console.print(table)


@workspace.command()
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.option("--skip-files", is_flag=True, help="Do not check that local files exist.")
def validate(target: Path, skip_files: bool) -> None:
    """Validate a METS (schema, references, files) or an OCRD-ZIP (zipped or a bag directory).

    Exit 1 on any problem.
    """
    is_bag = (target.is_file() and target.suffix == ".zip") or (target / "bagit.txt").is_file()
    if is_bag:
        report = validate_bag(target)
        for warning in report.warnings:
            say("warning", "yellow", warning)
        problems = report.errors
    else:
        problems = Workspace.open(target).validate(check_files=not skip_files)
    for problem in problems:
        say("invalid", "red", problem)
    if problems:
        raise FormatError(f"{target}: {len(problems)} problem(s)")
    console.print(f"{target}: valid")


@workspace.command()
@click.argument("directory", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="The .ocrd.zip"
)
@click.option("--identifier", help="Ocrd-Identifier (default: the METS identifier).")
def pack(directory: Path, output: Path, identifier: str | None) -> None:
    """Pack a workspace (a directory with mets.xml, or a METS file) into an OCRD-ZIP."""
    mets = directory / "mets.xml" if directory.is_dir() else directory
    pack_workspace(mets, output, identifier=identifier)
    console.print(f"{output}: packed")


@workspace.command()
@click.argument("bag", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True, help="New directory"
)
def unpack(bag: Path, output: Path) -> None:
    """Unpack and validate an OCRD-ZIP into a new workspace directory."""
    mets = unpack_bag(bag, output)
    console.print(f"{mets}: unpacked")
