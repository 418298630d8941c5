"""Run a processor over a workspace without the engine: what `ocrd-NAME -m mets.xml` does.

Each selected page becomes a PageJob built from the METS, the processor turns it into output
files, and those are registered in the METS in memory. The METS is saved once, atomically,
at the end, with a mets:agent recording the run; a page that fails does not stop the others,
and what succeeded stays registered, so the METS on disk is always valid and complete for
the pages it lists. Files replaced by `overwrite` are deleted only after that save, so the
METS on disk never points at a missing file.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrswarm.errors import MetsError, OcrswarmError, UsageError
from ocrswarm.formats.mets import MIMETYPE_PAGE, MetsFile, check_file_grp_name
from ocrswarm.formats.pageselect import select_pages
from ocrswarm.formats.workspace import Workspace
from ocrswarm.processors.processor import (
    InputFile,
    OutputFile,
    PageJob,
    Processor,
    check_outputs,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProcessorRun:
    """What one run of a processor over a workspace is asked to do (the CLI's options)."""

    executable: str
    version: str
    step: str  # the tool's first step: the agent's OTHERROLE
    input_file_grps: tuple[str, ...]
    output_file_grps: tuple[str, ...]
    parameters: Mapping[str, Any]
    page_selection: str | None = None
    overwrite: bool = False
    stop_on_error: bool = False


@dataclass(slots=True)
class RunReport:
    """How a run went: pages done, pages without input, pages failed, files registered."""

    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # page ID -> error message
    registered: list[MetsFile] = field(default_factory=list)


class PageFailuresError(OcrswarmError):
    """Some pages failed; the others were processed and registered."""

    def __init__(self, executable: str, report: RunReport) -> None:
        self.report = report
        total = len(report.failed) + len(report.processed)
        lines = [
            f"{executable}: {len(report.failed)} of {total} pages failed "
            f"({len(report.processed)} succeeded and are registered in the METS):"
        ]
        lines.extend(f"  {page_id}: {message}" for page_id, message in report.failed.items())
        super().__init__("\n".join(lines))


def run_standalone(
    workspace: Workspace, run: ProcessorRun, make_processor: Callable[[], Processor]
) -> RunReport:
    """Process the selected pages of `workspace` and save its METS once.

    Everything that can be checked without processing is checked before the processor is
    made (its model may take seconds to load) and before anything changes: the fileGrps,
    the page selection, existing output. Raises PageFailuresError (after saving) when pages
    failed; with `stop_on_error` the first failure ends the run.
    """
    mets = workspace.mets
    _check_file_grps(workspace, run)
    page_ids = select_pages(run.page_selection, mets.page_ids)
    _refuse_existing_output(workspace, run, page_ids)
    first_group = run.input_file_grps[0]
    todo = [
        page_id for page_id in page_ids if mets.find_files(file_grp=first_group, page_id=page_id)
    ]
    if not todo:
        raise MetsError(
            f"input fileGrp {first_group!r} has no file for the selected pages "
            f"({_abbreviated_list(page_ids)}); nothing to process"
        )
    chosen = set(todo)
    report = RunReport(skipped=[page_id for page_id in page_ids if page_id not in chosen])
    for page_id in report.skipped:
        log.warning("page %s: no file in input fileGrp %r; skipped", page_id, first_group)
    with make_processor() as processor:
        replaced = _remove_old_output(workspace, run, page_ids) if run.overwrite else []
        try:
            for page_id in todo:
                succeeded = _process_one(workspace, run, processor, page_id, report)
                if not succeeded and run.stop_on_error:
                    break
        finally:
            _add_agent(workspace, run)
            workspace.save()
            _delete_unreferenced(workspace, replaced, run.output_file_grps)
    if report.failed:
        raise PageFailuresError(run.executable, report)
    return report


def page_job(
    workspace: Workspace,
    page_id: str,
    input_file_grps: Sequence[str],
    output_file_grps: Sequence[str],
) -> PageJob:
    """One page's PageJob: its file in each input fileGrp, PAGE-XML preferred over images.

    Raises FormatError when a file cannot be used (a remote URL, an href leading outside).
    """
    inputs = []
    for file_grp in input_file_grps:
        files = workspace.mets.find_files(file_grp=file_grp, page_id=page_id)
        if not files:
            continue
        chosen = next((file for file in files if file.mimetype == MIMETYPE_PAGE), files[0])
        path = workspace.resolve(chosen)
        inputs.append(InputFile(file_grp, chosen.id, chosen.mimetype, path))
    return PageJob(workspace.directory, page_id, tuple(inputs), tuple(output_file_grps))


def _process_one(
    workspace: Workspace, run: ProcessorRun, processor: Processor, page_id: str, report: RunReport
) -> bool:
    """Process and register one page; a failure is recorded in `report`, never raised."""
    started = time.perf_counter()
    try:
        job = page_job(workspace, page_id, run.input_file_grps, run.output_file_grps)
        outputs = processor.process_page(job)
        report.registered.extend(_register(workspace, run, page_id, outputs))
    except Exception as error:  # a page's failure, whatever its cause, must not end the run
        message = _describe(error)
        report.failed[page_id] = message
        log.error("page %s failed: %s", page_id, message)
        log.debug("page %s traceback", page_id, exc_info=True)
        return False
    report.processed.append(page_id)
    log.info("page %s: %d file(s) in %.2f s", page_id, len(outputs), time.perf_counter() - started)
    return True


def _register(
    workspace: Workspace, run: ProcessorRun, page_id: str, outputs: Iterable[OutputFile]
) -> list[MetsFile]:
    """Check every output before registering any, so that a page is all in or all out."""
    outputs = list(outputs)
    check_outputs(
        outputs,
        executable=run.executable,
        output_file_grps=run.output_file_grps,
        page_id=page_id,
        workspace_dir=workspace.directory,
    )
    for output in outputs:
        workspace.mets.check_new_file(
            output.file_grp, output.file_id, output.href, output.mimetype, page_id
        )
    return [
        workspace.mets.add_file(
            output.file_grp, output.file_id, output.href, output.mimetype, output.page_id
        )
        for output in outputs
    ]


def _check_file_grps(workspace: Workspace, run: ProcessorRun) -> None:
    if not run.input_file_grps:
        raise UsageError(f"{run.executable}: no input fileGrp given (-I)")
    if not run.output_file_grps:
        raise UsageError(f"{run.executable}: no output fileGrp given (-O)")
    for file_grp in run.output_file_grps:
        check_file_grp_name(file_grp)
    missing = [grp for grp in run.input_file_grps if grp not in workspace.mets.file_groups]
    if missing:
        known = ", ".join(workspace.mets.file_groups) or "none"
        raise MetsError(
            f"input fileGrp {', '.join(map(repr, missing))} not in {workspace.mets_path} "
            f"(its fileGrps: {known})"
        )


def _refuse_existing_output(workspace: Workspace, run: ProcessorRun, page_ids: list[str]) -> None:
    if run.overwrite:
        return
    for file_grp in run.output_file_grps:
        pages = [p for p in page_ids if workspace.mets.find_files(file_grp=file_grp, page_id=p)]
        if pages:
            raise MetsError(
                f"output fileGrp {file_grp!r} already has files for {len(pages)} of the "
                f"selected pages ({_abbreviated_list(pages)}); use --overwrite to replace them"
            )


def _remove_old_output(workspace: Workspace, run: ProcessorRun, page_ids: list[str]) -> list[Path]:
    """Unregister the selected pages' old output; returns the paths to delete after saving."""
    paths = []
    for file_grp in run.output_file_grps:
        for page_id in page_ids:
            for file in workspace.mets.find_files(file_grp=file_grp, page_id=page_id):
                workspace.mets.remove_file(file.id)
                # an href that does not resolve is one we never wrote to: leave it alone
                if not file.is_url:
                    with contextlib.suppress(OcrswarmError):
                        paths.append(workspace.resolve(file))
    return paths


def _delete_unreferenced(
    workspace: Workspace, paths: list[Path], output_file_grps: Sequence[str]
) -> None:
    """Delete replaced files, except those a new output has been written over."""
    if not paths:
        return
    kept = {
        workspace.resolve(file)
        for file_grp in output_file_grps
        for file in workspace.mets.find_files(file_grp=file_grp)
        if not file.is_url
    }
    for path in paths:
        if path not in kept:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
            except OSError as error:
                log.warning("could not delete replaced file %s: %s", path, error.strerror)


def _add_agent(workspace: Workspace, run: ProcessorRun) -> None:
    workspace.mets.add_agent(
        f"{run.executable} v{run.version}",
        role="OTHER",
        otherrole=run.step,
        type="OTHER",
        othertype="SOFTWARE",
        notes={
            "input-file-grp": ",".join(run.input_file_grps),
            "output-file-grp": ",".join(run.output_file_grps),
            "parameter": json.dumps(dict(run.parameters), ensure_ascii=False),
            "page-id": run.page_selection or "",
        },
    )


def _describe(error: Exception) -> str:
    if isinstance(error, OcrswarmError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def _abbreviated_list(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … ({len(items)} in all)" if len(items) > limit else "")
