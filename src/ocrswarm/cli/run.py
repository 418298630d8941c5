"""`ocrswarm run`: OCR a folder of scans, a METS or an OCRD-ZIP on every core, resumably."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from ocrswarm.engine.records import Progress as JobProgress
from ocrswarm.engine.run import DEFAULT_MODEL, RunRequest, RunSummary, run_workflow
from ocrswarm.engine.workflow import WorkflowStep, parse_tasks, parse_workflow
from ocrswarm.errors import UsageError

stdout = Console(highlight=False, markup=False)
stderr = Console(stderr=True, highlight=False, markup=False)


@click.command()
@click.argument("source", metavar="INPUT", type=click.Path(exists=True, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(file_okay=False, path_type=Path),
    help="The workspace to create or continue (OUT/mets.xml). Default for a METS: its folder.",
)
@click.option(
    "-w",
    "--workflow",
    "workflow",
    multiple=True,
    help="A workflow file in `ocrd process` syntax, or (repeatable) one task such as "
    "'swarm-recognize -I OCR-D-IMG -O OCR-D-OCR -P model deu'. "
    "Default: recognize, then export ALTO, hOCR and text.",
)
@click.option(
    "-I",
    "--input-file-grp",
    "image_file_grp",
    metavar="GRP",
    help="The fileGrp of INPUT's METS that holds the page images. The default workflow "
    "reads it, a -w workflow wherever it reads OCR-D-IMG from the METS. Default: OCR-D-IMG; "
    "a METS without it and with just one fileGrp of images has that one read (with a warning).",
)
@click.option(
    "--model",
    help=f"Tesseract model of the default workflow (default: {DEFAULT_MODEL}; e.g. deu, deu+eng).",
)
@click.option("-j", "--jobs", type=click.IntRange(min=1), help="Worker processes (default: cores).")
@click.option("-g", "--page-id", "page_selection", help="Pages: A,B or A..B or //regex.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--overwrite", is_flag=True, help="Replace output a different run left in OUT.")
@click.option(
    "--max-attempts",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Tries per page and step before it counts as failed.",
)
@click.option(
    "--page-timeout",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a page may take before its worker is killed (counts as a failed try).",
)
@click.option("--db", "db_url", help="Store URL (default: sqlite in OUT/.ocrswarm/).")
@click.option("--no-text", is_flag=True, help="Do not write OUT/text.txt.")
def run(
    source: Path,
    output: Path | None,
    workflow: tuple[str, ...],
    model: str | None,
    image_file_grp: str | None,
    jobs: int | None,
    page_selection: str | None,
    as_json: bool,
    overwrite: bool,
    max_attempts: int,
    page_timeout: float | None,
    db_url: str | None,
    no_text: bool,
) -> None:
    """OCR INPUT (a folder of images, a METS file or an OCRD-ZIP) into the workspace OUT.

    Every page goes through the workflow on its own, on every core. OUT gets PAGE-XML in
    OCR-D-OCR, ALTO in OCR-D-ALTO, hOCR in OCR-D-HOCR, text in OCR-D-TXT and the whole
    document's text in OUT/text.txt (pages separated by form feeds). Run the same command
    again after an interruption to continue where it stopped; pages that failed are retried.
    Exit status 1 when a page failed.
    """
    if workflow and model:
        raise UsageError("--model sets the default workflow's model; with -w, say -P model …")
    request = RunRequest(
        input=source,
        output=output,
        steps=_steps(workflow) if workflow else None,
        model=model or DEFAULT_MODEL,
        image_file_grp=image_file_grp,
        page_selection=page_selection,
        workers=jobs,
        db_url=db_url,
        overwrite=overwrite,
        max_attempts=max_attempts,
        page_timeout=page_timeout,
        write_text=not no_text,
    )
    bar = ProgressBar(enabled=stderr.is_terminal)
    try:
        summary = run_workflow(request, on_start=bar.start, on_progress=bar.update)
    finally:
        bar.stop()
    for warning in summary.warnings:
        stderr.print(Text.assemble(("warning: ", "yellow"), warning), soft_wrap=True)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_summary(summary)
    if summary.exit_code:
        sys.exit(summary.exit_code)  # 1: pages failed; 128+N: stopped by signal N


def _steps(workflow: Sequence[str]) -> list[WorkflowStep]:
    """-w FILE, or -w TASK repeated."""
    if len(workflow) == 1 and Path(workflow[0]).is_file():
        return parse_workflow(Path(workflow[0]).read_text(encoding="utf-8"))
    return parse_tasks(workflow)


class ProgressBar:
    """Pages done and failed, pages/s and ETA, on stderr when it is a terminal."""

    def __init__(self, *, enabled: bool) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        self._enabled = enabled
        self._started = 0.0
        self._done_before = 0

    def start(self, summary: RunSummary) -> None:
        if not self._enabled:
            return
        self._started = time.monotonic()
        self._done_before = summary.pages_done
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("pages, {task.fields[failed]} failed, {task.fields[rate]} pages/s"),
            TimeRemainingColumn(),
            console=stderr,
        )
        self._task = self._progress.add_task(
            "resuming" if summary.resumed else "running",
            total=summary.pages_total,
            completed=summary.pages_done + summary.pages_failed + summary.pages_cancelled,
            failed=summary.pages_failed,
            rate="-",
        )
        self._progress.start()

    def update(self, progress: JobProgress) -> None:
        if self._progress is None or self._task is None:
            return
        elapsed = time.monotonic() - self._started
        rate = (progress.pages_done - self._done_before) / elapsed if elapsed > 0 else 0.0
        self._progress.update(
            self._task,
            completed=progress.pages_done + progress.pages_failed + progress.pages_cancelled,
            failed=progress.pages_failed,
            rate=f"{rate:.1f}",
        )

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _print_summary(summary: RunSummary) -> None:
    if summary.interrupted_by is not None:
        pending = summary.pages_total - summary.pages_done - summary.pages_failed
        stderr.print(
            f"interrupted: {summary.pages_done} of {summary.pages_total} pages done, "
            f"{pending} to go. Run the same command again to continue where it stopped.",
            soft_wrap=True,
        )
        return
    stdout.print(
        f"{summary.mets_path}: {summary.pages_done} of {summary.pages_total} pages done, "
        f"{summary.pages_failed} failed in {summary.elapsed_seconds:.1f} s "
        f"({summary.pages_per_second:.1f} pages/s)" + (" (resumed)" if summary.resumed else ""),
        soft_wrap=True,
    )
    if summary.text_file is not None:
        stdout.print(f"text: {summary.text_file}", soft_wrap=True)
    if summary.failed:
        stderr.print(
            Text.assemble(
                ("failed: ", "bold red"),
                f"{len(summary.failed)} page task(s) failed after all attempts:",
            )
        )
        for page in summary.failed:
            stderr.print(
                f"  {page.page_id} ({page.executable}, {page.attempts} attempts): {page.error}",
                soft_wrap=True,
            )
    if summary.pages_cancelled:
        stderr.print(f"{summary.pages_cancelled} page(s) cancelled", soft_wrap=True)
