"""The log of a job, as text: what ran, how its pages stand, and every page that failed.

Made from the store on request, so it is there for every job, survives restarts, and never
grows a file per job on disk.
"""

from __future__ import annotations

import datetime
import json

from ocrswarm.engine.records import JobInfo
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store


def job_log(store: Store, job_id: str, reported: State) -> str:
    """The log of processing job `job_id` (NotFoundError for an unknown id)."""
    job = store.job(job_id)
    lines = [
        f"job {job.id}: {job.executable}",
        f"created: {_when(job.created_at)}",
        f"workspace: {job.workspace_id} ({job.mets_path})",
        f"input fileGrps: {','.join(job.input_file_grps)}",
        f"output fileGrps: {','.join(job.output_file_grps)}",
        f"parameters: {json.dumps(dict(job.parameters), ensure_ascii=False, sort_keys=True)}",
    ]
    if job.workflow_job_id:
        lines.append(f"workflow job: {job.workflow_job_id} (step {job.step + 1})")
    if job.depends_on:
        lines.append(f"depends on: {', '.join(job.depends_on)}")
    lines.append(f"state: {reported}")
    lines.append(f"pages: {job.page_count} ({_counts(job)})")
    if job.finished_at is not None:
        lines.append(f"finished: {_when(job.finished_at)}")
    for task in store.failed_tasks(job_id):
        lines.append(
            f"page {task.page_id} FAILED after {task.attempts} attempt(s): {task.error or '?'}"
        )
    for page in store.page_tasks(job_id):
        if page.state == State.CANCELLED:
            reason = f": {page.error}" if page.error else " (an earlier step failed or cancel)"
            lines.append(f"page {page.page_id} CANCELLED{reason}")
    return "\n".join(lines) + "\n"


def _counts(job: JobInfo) -> str:
    present = [f"{count} {state}" for state, count in sorted(job.counts.items()) if count]
    return ", ".join(present) or "none"


def _when(timestamp: float) -> str:
    return datetime.datetime.fromtimestamp(timestamp, tz=datetime.UTC).isoformat(timespec="seconds")
