"""What never changes about a job once it exists, read once and kept in memory.

The queue's hot path needs each task's processor, parameters, fileGrps, workspace and
per-page DAG; these are fixed at submission, so one query per job per process is enough.
Only committed rows are ever read into the catalog (submission never consults it), so a
rolled-back submission cannot leave a stale entry behind.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, select

from ocrswarm.engine.schema import KIND_WORKFLOW, job_dependencies, jobs, workflow_jobs, workspaces


@dataclass(frozen=True, slots=True)
class JobFacts:
    """The fixed facts of one processing job."""

    id: int
    uid: str
    workflow_job_id: int
    step: int
    executable: str
    parameters: Mapping[str, Any]
    input_file_grps: tuple[str, ...]
    output_file_grps: tuple[str, ...]
    max_attempts: int


@dataclass(frozen=True, slots=True)
class WorkflowFacts:
    """The fixed facts of one workflow job (or of a standalone job's holder row)."""

    id: int
    uid: str
    kind: str
    workspace_id: str
    mets_path: Path
    workspace_dir: Path
    job_ids: tuple[int, ...]  # by step
    successors: tuple[tuple[int, ...], ...]  # steps that read a step's outputs directly
    downstream: tuple[frozenset[int], ...]  # every step that needs a step, transitively
    dependency_job_ids: frozenset[int]
    dependency_workflow_ids: frozenset[int]

    @property
    def public_uid(self) -> str | None:
        """The workflow job id users see; None for a standalone processing job's holder."""
        return self.uid if self.kind == KIND_WORKFLOW else None


def successors_of(predecessors: Iterable[Iterable[int]]) -> tuple[tuple[int, ...], ...]:
    """Invert the per-step predecessor lists."""
    lists = [list(p) for p in predecessors]
    result: list[list[int]] = [[] for _ in lists]
    for step, preds in enumerate(lists):
        for pred in preds:
            result[pred].append(step)
    return tuple(tuple(s) for s in result)


def downstream_of(successors: tuple[tuple[int, ...], ...]) -> tuple[frozenset[int], ...]:
    """For each step, all steps reachable from it (later steps only, so one backward pass)."""
    reach: list[frozenset[int]] = [frozenset()] * len(successors)
    for step in reversed(range(len(successors))):
        found: set[int] = set()
        for succ in successors[step]:
            found.add(succ)
            found |= reach[succ]
        reach[step] = frozenset(found)
    return tuple(reach)


class Catalog:
    """Per-process cache of JobFacts and WorkflowFacts, loaded on first use."""

    def __init__(self) -> None:
        self._jobs: dict[int, JobFacts] = {}
        self._workflows: dict[int, WorkflowFacts] = {}
        self._lock = threading.Lock()

    def jobs(self, connection: Connection, ids: Iterable[int]) -> dict[int, JobFacts]:
        """The facts of every job in `ids` (one query for those not yet known)."""
        wanted = set(ids)
        missing = wanted - self._jobs.keys()
        if missing:
            rows = connection.execute(select(jobs).where(jobs.c.id.in_(sorted(missing)))).all()
            loaded = {
                row.id: JobFacts(
                    id=row.id,
                    uid=row.uid,
                    workflow_job_id=row.workflow_job_id,
                    step=row.step,
                    executable=row.executable,
                    parameters=row.parameters,
                    input_file_grps=tuple(row.input_file_grps),
                    output_file_grps=tuple(row.output_file_grps),
                    max_attempts=row.max_attempts,
                )
                for row in rows
            }
            with self._lock:
                self._jobs.update(loaded)
        return {job_id: self._jobs[job_id] for job_id in wanted}

    def job(self, connection: Connection, job_id: int) -> JobFacts:
        return self.jobs(connection, [job_id])[job_id]

    def workflow(self, connection: Connection, workflow_id: int) -> WorkflowFacts:
        """The facts of one workflow job."""
        known = self._workflows.get(workflow_id)
        if known is not None:
            return known
        row = connection.execute(
            select(workflow_jobs, workspaces.c.mets_path, workspaces.c.directory)
            .join(workspaces, workspaces.c.id == workflow_jobs.c.workspace_id)
            .where(workflow_jobs.c.id == workflow_id)
        ).one()
        job_ids = connection.execute(
            select(jobs.c.id).where(jobs.c.workflow_job_id == workflow_id).order_by(jobs.c.step)
        ).scalars()
        dependencies = connection.execute(
            select(jobs.c.id, jobs.c.workflow_job_id)
            .join(job_dependencies, job_dependencies.c.depends_on_job_id == jobs.c.id)
            .where(job_dependencies.c.workflow_job_id == workflow_id)
        ).all()
        successors = successors_of(row.step_predecessors)
        facts = WorkflowFacts(
            id=row.id,
            uid=row.uid,
            kind=row.kind,
            workspace_id=row.workspace_id,
            mets_path=Path(row.mets_path),
            workspace_dir=Path(row.directory),
            job_ids=tuple(job_ids),
            successors=successors,
            downstream=downstream_of(successors),
            dependency_job_ids=frozenset(dep.id for dep in dependencies),
            dependency_workflow_ids=frozenset(dep.workflow_job_id for dep in dependencies),
        )
        with self._lock:
            self._workflows[workflow_id] = facts
        return facts
