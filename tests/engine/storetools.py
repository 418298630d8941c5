"""Building blocks for store tests: pages, workflows, and workers that do nothing."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ocrswarm.engine.records import FileRef, PageInputs, TaskLease, TaskResult, WorkflowJobInfo
from ocrswarm.engine.store import Store
from ocrswarm.engine.workflow import WorkflowStep, parse_workflow

THREE_STEPS = "dummy -I OCR-D-IMG -O A\ndummy -I A -O B\ndummy -I B -O C\n"


def image(page_id: str, grp: str = "OCR-D-IMG") -> FileRef:
    return FileRef(grp, f"{grp}_{page_id}", "image/png", f"{grp}/{grp}_{page_id}.png", page_id)


def pages(count: int, grps: Sequence[str] = ("OCR-D-IMG",)) -> list[PageInputs]:
    """Pages P0001… with one file in each of `grps`."""
    ids = [f"P{number:04d}" for number in range(1, count + 1)]
    return [PageInputs(page_id, [image(page_id, grp) for grp in grps]) for page_id in ids]


def submit(
    store: Store,
    workflow: str = THREE_STEPS,
    page_count: int = 3,
    *,
    mets: str = "/data/ws/mets.xml",
    **options: object,
) -> WorkflowJobInfo:
    """Submit `workflow` over `page_count` pages of a workspace at `mets`."""
    workspace_id = store.add_workspace(Path(mets))
    steps: list[WorkflowStep] = parse_workflow(workflow)
    return store.submit_workflow(workspace_id, steps, pages(page_count), **options)  # type: ignore[arg-type]


def output_of(lease: TaskLease, suffix: str = "") -> list[FileRef]:
    """What a processor would return: one PAGE file per output fileGrp of the lease's page."""
    return [
        FileRef(
            grp,
            f"{grp}_{lease.page_id}{suffix}",
            "application/vnd.prima.page+xml",
            f"{grp}/{grp}_{lease.page_id}{suffix}.xml",
            lease.page_id,
        )
        for grp in lease.output_file_grps
    ]


def result_of(lease: TaskLease) -> TaskResult:
    return TaskResult(lease.task_id, lease.token, output_of(lease))


def run_until_empty(store: Store, worker: str = "w", batch: int = 8) -> list[TaskLease]:
    """Claim and complete until nothing is ready; every lease handed out, in order."""
    handed_out: list[TaskLease] = []
    while leases := store.claim(worker, limit=batch):
        handed_out.extend(leases)
        assert store.complete([result_of(lease) for lease in leases]) == [True] * len(leases)
    return handed_out
