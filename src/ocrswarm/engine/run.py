"""One `ocrswarm run`: prepare OUT, submit the workflow (or find it again), run it, sum up.

Running the same command again continues the same workflow job: the job is found by a
fingerprint of its steps and pages, the leases of the run that died are taken back (the run
lock proves it is dead), pages that failed are retried, and no finished page is redone.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrswarm.engine.coordinator import Coordinator, CoordinatorOptions, Interrupted
from ocrswarm.engine.documenttext import write_document_text
from ocrswarm.engine.metswriter import MetsWriter
from ocrswarm.engine.prepare import PreparedWorkspace, RunInput, prepare_workspace
from ocrswarm.engine.processlock import exclusive_lock
from ocrswarm.engine.records import FileRef, PageInputs, Progress
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.tools import step_agent, tool_description
from ocrswarm.engine.workers import WorkerPool
from ocrswarm.engine.workflow import (
    WorkflowStep,
    default_workflow,
    mets_input_file_grps,
    reads_images_from_mets,
    validate_steps,
    with_image_file_grp,
    workflow_fingerprint,
)
from ocrswarm.errors import ExitCode, FormatError, UsageError
from ocrswarm.formats.metsstream import MetsOutline, read_outline
from ocrswarm.formats.pageselect import select_pages
from ocrswarm.formats.workspace import IMAGE_FILE_GRP
from ocrswarm.processors.tessdata import find_model

DEFAULT_MODEL = "eng"


@dataclass(frozen=True, slots=True)
class RunRequest:
    """What `ocrswarm run` was asked to do."""

    input: Path
    output: Path | None = None  # default: in place for a METS; required otherwise
    steps: Sequence[WorkflowStep] | None = None  # None: the default workflow
    model: str = DEFAULT_MODEL
    image_file_grp: str | None = None  # None: OCR-D-IMG, or a METS's only image fileGrp
    page_selection: str | None = None
    workers: int | None = None  # default: one per core
    db_url: str | None = None  # default: OUT/.ocrswarm/state.sqlite
    overwrite: bool = False
    max_attempts: int = 3
    page_timeout: float | None = None
    write_text: bool = True
    lease_seconds: float = 60.0
    grace_seconds: float = 10.0


@dataclass(frozen=True, slots=True)
class FailedPage:
    page_id: str
    executable: str
    error: str
    attempts: int


@dataclass(slots=True)
class RunSummary:
    """How a run went; `to_dict` is what `--json` prints."""

    mets_path: Path
    workflow_job_id: str
    state: State
    resumed: bool
    pages_total: int
    pages_done: int
    pages_failed: int
    pages_cancelled: int
    pages_done_now: int  # by this invocation (not by an earlier, interrupted one)
    elapsed_seconds: float
    failed: list[FailedPage] = field(default_factory=list)
    skipped_pages: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    text_file: Path | None = None
    interrupted_by: int | None = None  # signal number

    @property
    def pages_per_second(self) -> float:
        return self.pages_done_now / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    @property
    def exit_code(self) -> int:
        if self.interrupted_by is not None:
            return 128 + self.interrupted_by
        if self.state != State.SUCCESS or self.failed:
            return int(ExitCode.FAILURE)
        return int(ExitCode.OK)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mets": str(self.mets_path),
            "workflow_job_id": self.workflow_job_id,
            "state": str(self.state),
            "resumed": self.resumed,
            "interrupted": self.interrupted_by is not None,
            "pages": {
                "total": self.pages_total,
                "done": self.pages_done,
                "failed": self.pages_failed,
                "cancelled": self.pages_cancelled,
                "pending": self.pages_total
                - self.pages_done
                - self.pages_failed
                - self.pages_cancelled,
                "skipped": self.skipped_pages,
            },
            "failed": [
                {
                    "page_id": page.page_id,
                    "executable": page.executable,
                    "error": page.error,
                    "attempts": page.attempts,
                }
                for page in self.failed
            ],
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "pages_per_second": round(self.pages_per_second, 2),
            "text_file": str(self.text_file) if self.text_file else None,
            "warnings": self.warnings,
        }


class RunLockedError(UsageError):
    """Another `ocrswarm run` is working in the same OUT."""


def run_workflow(
    request: RunRequest,
    *,
    on_start: Callable[[RunSummary], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> RunSummary:
    """Run `request` to the end (or to an interrupt, reported in the summary)."""
    started = time.monotonic()
    source = RunInput.of(request.input)
    output = request.output or source.default_output()
    if output is None:
        raise UsageError(f"{request.input} is not a METS: say where the workspace goes (-o OUT)")
    wanted = request.steps or default_workflow(request.model)
    if request.image_file_grp is not None:
        wanted = with_image_file_grp(wanted, request.image_file_grp)
    checked = validate_steps(wanted, tool_description)  # before anything is made
    _check_models(checked)
    # The workers start now and load their models while OUT is prepared and jobs submitted.
    pool = WorkerPool(
        request.workers or os.cpu_count() or 1,
        warm_up=[(step.executable, step.parameters) for step in checked],
    )
    pool.start()
    try:
        prepared = prepare_workspace(source, output)
        prepared.state_dir.mkdir(exist_ok=True)
        url = request.db_url or sqlite_url(prepared.state_dir / "state.sqlite")
        lock = prepared.state_dir / "run.lock"
        with exclusive_lock(lock, lambda holder: _run_locked(holder, lock)), Store(url) as store:
            store.migrate()
            summary = _run(store, prepared, wanted, request, pool, on_start, on_progress)
    finally:
        pool.close()
    summary.elapsed_seconds = time.monotonic() - started
    return summary


@dataclass(frozen=True, slots=True)
class _Plan:
    """What a run does in its workspace: the checked steps and the pages."""

    steps: list[WorkflowStep]
    page_ids: list[str]  # selected
    with_input: list[str]  # selected and with a file to read: the pages to process
    skipped: list[str]  # selected but without input
    notes: list[str]  # how the plan was made, where it guessed


def _plan(
    mets_path: Path, wanted: Sequence[WorkflowStep], request: RunRequest
) -> tuple[_Plan, MetsOutline]:
    """The plan, and the outline of the METS it was made from: the files of the fileGrps
    the workflow reads, and how many files each page has in those it writes."""
    outputs = [grp for step in wanted for grp in step.output_file_grps]
    outline = read_outline(mets_path, mets_input_file_grps(wanted), counted_grps=outputs)
    notes: list[str] = []
    if request.image_file_grp is None:
        wanted, notes = _images_elsewhere(outline, mets_path, wanted)
        if notes:  # the images are in another fileGrp: its files are wanted
            outline = read_outline(mets_path, mets_input_file_grps(wanted), counted_grps=outputs)
    steps = validate_steps(wanted, tool_description, available_file_grps=outline.file_groups)
    page_ids = select_pages(request.page_selection, outline.page_ids)
    groups = mets_input_file_grps(steps)
    with_input: list[str] = []
    skipped: list[str] = []
    for page_id in page_ids:
        has_input = any(outline.files_of(page_id, grp) for grp in groups)
        (with_input if has_input else skipped).append(page_id)
    if not with_input:
        raise FormatError(
            f"none of the {len(page_ids)} selected pages has a file in "
            f"{', '.join(groups)}; nothing to do"
        )
    return _Plan(steps, page_ids, with_input, skipped, notes), outline


def _images_elsewhere(
    outline: MetsOutline, mets_path: Path, steps: Sequence[WorkflowStep]
) -> tuple[list[WorkflowStep], list[str]]:
    """A workflow that reads OCR-D-IMG, on a METS without it: its only image fileGrp instead.

    An image fileGrp holds images only (every file image/*); those the workflow writes
    itself do not count, so a resumed run chooses as the first one did.
    """
    if not reads_images_from_mets(steps) or IMAGE_FILE_GRP in outline.file_groups:
        return list(steps), []
    produced = {grp for step in steps for grp in step.output_file_grps}
    candidates = [
        grp
        for grp in outline.file_groups
        if grp not in produced
        and (mimetypes := outline.mimetypes.get(grp))
        and all(mimetype.startswith("image/") for mimetype in mimetypes)
    ]
    if len(candidates) != 1:
        have = ", ".join(outline.file_groups) or "none"
        found = (
            f"several image fileGrps ({', '.join(candidates)})"
            if candidates
            else f"no fileGrp of images only (its fileGrps: {have})"
        )
        raise UsageError(
            f"{mets_path} has no fileGrp {IMAGE_FILE_GRP} and {found}: "
            "say which fileGrp holds the page images with -I GRP"
        )
    [grp] = candidates
    note = (
        f"{mets_path} has no fileGrp {IMAGE_FILE_GRP}: reading the page images from "
        f"{grp}, its only image fileGrp (-I GRP chooses another)"
    )
    return with_image_file_grp(steps, grp), [note]


def _run(
    store: Store,
    prepared: PreparedWorkspace,
    wanted: Sequence[WorkflowStep],
    request: RunRequest,
    pool: WorkerPool,
    on_start: Callable[[RunSummary], None] | None,
    on_progress: Callable[[Progress], None] | None,
) -> RunSummary:
    mets_path = prepared.mets_path
    plan, workspace_id, job_id, resumed = _plan_and_submit(store, mets_path, wanted, request)
    writer = MetsWriter(
        mets_path,
        store,
        workspace_id,
        agents=[
            step_agent(
                step.executable,
                step.input_file_grps,
                step.output_file_grps,
                step.parameters,
                request.page_selection,
            )
            for step in plan.steps
        ],
    )
    writer.flush(force=True)  # what a crashed run completed but did not register
    before = store.progress(job_id)
    summary = RunSummary(
        mets_path,
        job_id,
        before.state,
        resumed,
        before.pages_total,
        before.pages_done,
        before.pages_failed,
        before.pages_cancelled,
        pages_done_now=0,
        elapsed_seconds=0.0,
        skipped_pages=plan.skipped,
        warnings=[*prepared.warnings, *plan.notes, *_skip_warnings(plan.skipped, plan.steps)],
    )
    if on_start:
        on_start(summary)
    options = CoordinatorOptions(
        workers=pool.size,
        lease_seconds=request.lease_seconds,
        page_timeout=request.page_timeout,
        grace_seconds=request.grace_seconds,
    )
    coordinator = Coordinator(store, job_id, writer, options, on_progress=on_progress, pool=pool)
    try:
        if not before.finished:
            coordinator.run()
    except Interrupted as interrupt:
        summary.interrupted_by = interrupt.signum
    after = store.progress(job_id)
    summary.state = after.state
    summary.pages_done, summary.pages_failed = after.pages_done, after.pages_failed
    summary.pages_cancelled = after.pages_cancelled
    summary.pages_done_now = after.pages_done - before.pages_done
    summary.failed = [
        FailedPage(task.page_id, task.executable, task.error or "failed", task.attempts)
        for task in store.failed_tasks(job_id)
    ]
    summary.warnings.extend(writer.problems)
    if request.write_text and summary.interrupted_by is None:
        summary.text_file = write_document_text(mets_path, plan.steps, plan.page_ids)
    return summary


def _plan_and_submit(
    store: Store, mets_path: Path, wanted: Sequence[WorkflowStep], request: RunRequest
) -> tuple[_Plan, str, str, bool]:
    """(plan, workspace id, workflow job id, resumed), from a streamed read of the METS that
    is not kept: the run holds nothing of the METS while the pages are processed."""
    plan, outline = _plan(mets_path, wanted, request)
    workspace_id = store.add_workspace(mets_path)
    job_id, resumed = _submit_or_resume(store, outline, mets_path, workspace_id, plan, request)
    return plan, workspace_id, job_id, resumed


def _submit_or_resume(
    store: Store,
    outline: MetsOutline,
    mets_path: Path,
    workspace_id: str,
    plan: _Plan,
    request: RunRequest,
) -> tuple[str, bool]:
    """The workflow job of this run: found again (resumed, failed pages retried) or new."""
    fingerprint = workflow_fingerprint(plan.steps, plan.with_input)
    job_id = store.find_workflow_job(workspace_id, fingerprint)
    if job_id is not None:
        if request.db_url is None:
            store.expire_leases(now=math.inf)  # we hold the run lock: their holder is dead
        store.retry_failed(job_id)
        return job_id, True
    if not request.overwrite:
        _refuse_existing_output(outline, mets_path, plan.steps, plan.with_input)
    job = store.submit_workflow(
        workspace_id,
        plan.steps,
        _page_inputs(outline, plan.steps, plan.with_input),
        max_attempts=request.max_attempts,
        fingerprint=fingerprint,
        description=f"ocrswarm run {request.input}",
        page_selection=request.page_selection,
    )
    return job.id, False


def _check_models(steps: Sequence[WorkflowStep]) -> None:
    """A missing Tesseract model is one clear error now, not a failure on every page."""
    for step in steps:
        if step.executable == "ocrd-swarm-recognize":
            find_model(str(step.parameters["model"]))


def _page_inputs(
    outline: MetsOutline, steps: Sequence[WorkflowStep], page_ids: Sequence[str]
) -> list[PageInputs]:
    """Each page with its files in the fileGrps the workflow reads from the METS."""
    groups = mets_input_file_grps(steps)
    return [
        PageInputs(
            page_id,
            [
                FileRef(grp, file.id, file.mimetype, file.href, page_id)
                for grp in groups
                for file in outline.files_of(page_id, grp)
            ],
        )
        for page_id in page_ids
    ]


def _skip_warnings(skipped: Sequence[str], steps: Sequence[WorkflowStep]) -> list[str]:
    if not skipped:
        return []
    shown = ", ".join(skipped[:5]) + (f", … ({len(skipped)} in all)" if len(skipped) > 5 else "")
    groups = ", ".join(mets_input_file_grps(steps))
    return [f"pages without a file in {groups} skipped: {shown}"]


def _refuse_existing_output(
    outline: MetsOutline, mets_path: Path, steps: Sequence[WorkflowStep], page_ids: Sequence[str]
) -> None:
    for step in steps:
        for grp in step.output_file_grps:
            counts = outline.file_counts.get(grp)
            if counts is None or grp not in outline.file_groups:
                continue
            with_files = {page for page, n in zip(outline.page_ids, counts, strict=True) if n}
            pages = [page for page in page_ids if page in with_files]
            if pages:
                raise UsageError(
                    f"{mets_path} already has files in {grp} for {len(pages)} of the "
                    "selected pages (from another workflow or page selection); "
                    "pass --overwrite to replace them"
                )


def _run_locked(holder: str, lock: Path) -> RunLockedError:
    return RunLockedError(
        f"another ocrswarm run ({holder}) is working in {lock.parent.parent}; "
        "wait for it to end or stop it first"
    )
