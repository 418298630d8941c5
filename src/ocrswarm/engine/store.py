"""The engine's durable state behind one object: submission, the page-task queue, the METS
writer's outbox, control and status.

`Store(url)` works the same on SQLite (embedded; `sqlite:///path/state.sqlite`) and on
PostgreSQL (`postgresql://…`). Every method is one transaction. The work is done by small
modules, each with one job: submission (bulk inserts), queue (leases), propagation (what
follows from a state change), outbox (METS registrations), control (cancel, retry,
priority), status (reading). Time comes from `clock` so tests can move it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from types import TracebackType

from ocrswarm.engine import (
    control,
    outbox,
    publication,
    queue,
    status,
    submission,
    workerregistry,
)
from ocrswarm.engine.catalog import Catalog
from ocrswarm.engine.database import (
    PATIENCE_OPTION,
    connect,
    migrate,
    refresh_statistics,
    run_read,
    run_write,
)
from ocrswarm.engine.queue import RetryPolicy
from ocrswarm.engine.records import (
    FailedTask,
    JobInfo,
    JobStatus,
    PageInputs,
    Progress,
    Registration,
    TaskInfo,
    TaskLease,
    TaskResult,
    WorkerInfo,
    WorkflowJobInfo,
    WorkspaceInfo,
)
from ocrswarm.engine.schema import KIND_PROCESSING, KIND_WORKFLOW
from ocrswarm.engine.states import State
from ocrswarm.engine.workflow import WorkflowStep

# a submission of this many page tasks refreshes PostgreSQL's statistics (database.py)
_ANALYZE_AFTER_TASKS = 1000


def sqlite_url(path: Path) -> str:
    """The store URL of an SQLite database file."""
    return f"sqlite:///{Path(path).absolute()}"


class Store:
    """Jobs, page tasks and their leases in a database (see the module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        clock: Callable[[], float] = time.time,
        retry_policy: RetryPolicy | None = None,
    ) -> None:
        self.url = url
        self._engine = connect(url)
        self._clock = clock
        self._policy = retry_policy or RetryPolicy()
        self._catalog = Catalog()

    @property
    def dialect(self) -> str:
        """ "sqlite" or "postgresql"."""
        return self._engine.dialect.name

    def patient(self, seconds: float) -> Store:
        """This store on the same connections, but every operation waits up to `seconds`
        for a PostgreSQL server that went away (restart, network cut) instead of failing."""
        view = copy.copy(self)
        view._engine = self._engine.execution_options(**{PATIENCE_OPTION: seconds})
        return view

    def close(self) -> None:
        """Close the database connections."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def migrate(self) -> None:
        """Create or upgrade the schema (alembic upgrade head); safe to call every start."""
        migrate(self._engine)

    # submission

    def add_workspace(self, mets_path: Path) -> str:
        """Register the workspace whose METS is `mets_path`; the same path gives the same id."""
        now = self._clock()
        return run_write(self._engine, lambda c: submission.add_workspace(c, now, Path(mets_path)))

    def workspace(self, workspace_id: str) -> WorkspaceInfo:
        return run_read(self._engine, lambda c: status.workspace_info(c, workspace_id))

    def submit_workflow(
        self,
        workspace_id: str,
        steps: Sequence[WorkflowStep],
        pages: Sequence[PageInputs],
        *,
        priority: int = 0,
        max_attempts: int = 3,
        description: str | None = None,
        depends_on: Sequence[str] = (),
        fingerprint: str | None = None,
        page_selection: str | None = None,
    ) -> WorkflowJobInfo:
        """A workflow job over `pages`: one processing job per step, one task per page each.

        `pages` carry each page's files in the fileGrps the workflow reads from the METS;
        later steps read what earlier ones write. `depends_on` names jobs (processing or
        workflow) that must succeed first; `fingerprint` lets find_workflow_job find it again;
        `page_selection` is what chose `pages` (OCR-D's page_id), kept to show with the job.
        """
        uid, _ = self._submit(
            KIND_WORKFLOW,
            workspace_id,
            steps,
            pages,
            priority,
            max_attempts,
            description,
            depends_on,
            fingerprint,
            page_selection,
        )
        return self.workflow_job(uid)

    def submit_processing_job(
        self,
        workspace_id: str,
        step: WorkflowStep,
        pages: Sequence[PageInputs],
        *,
        priority: int = 0,
        max_attempts: int = 3,
        description: str | None = None,
        depends_on: Sequence[str] = (),
        page_selection: str | None = None,
    ) -> JobInfo:
        """One step over `pages`, as OCR-D's POST /processor/run creates it.

        An input fileGrp that `pages` lack is read from the outputs of the `depends_on` jobs.
        """
        _, job_uids = self._submit(
            KIND_PROCESSING,
            workspace_id,
            [step],
            pages,
            priority,
            max_attempts,
            description,
            depends_on,
            None,
            page_selection,
        )
        return self.job(job_uids[0])

    def _submit(
        self,
        kind: str,
        workspace_id: str,
        steps: Sequence[WorkflowStep],
        pages: Sequence[PageInputs],
        priority: int,
        max_attempts: int,
        description: str | None,
        depends_on: Sequence[str],
        fingerprint: str | None,
        page_selection: str | None,
    ) -> tuple[str, list[str]]:
        now = self._clock()
        made = run_write(
            self._engine,
            lambda c: submission.submit(
                c,
                now,
                kind=kind,
                workspace_id=workspace_id,
                steps=steps,
                pages=pages,
                priority=priority,
                max_attempts=max_attempts,
                description=description,
                depends_on=depends_on,
                fingerprint=fingerprint,
                page_selection=page_selection,
            ),
        )
        if len(steps) * len(pages) >= _ANALYZE_AFTER_TASKS:
            refresh_statistics(self._engine, ["tasks", "files"])
        return made

    # the queue

    def claim(
        self,
        worker_id: str,
        *,
        executables: Collection[str] | None = None,
        limit: int = 1,
        lease_seconds: float = 60,
    ) -> list[TaskLease]:
        """Lease up to `limit` ready tasks (of these `executables`, or any), best first."""
        now = self._clock()
        return run_write(
            self._engine,
            lambda c: queue.claim(
                c,
                self._catalog,
                now,
                worker_id,
                executables=executables,
                limit=limit,
                lease_seconds=lease_seconds,
            ),
        )

    def claim_tasks(
        self, worker_id: str, task_ids: Collection[int], *, lease_seconds: float = 60
    ) -> list[TaskLease]:
        """Lease these tasks (named by RabbitMQ messages) if they may run now; see
        queue.claim_tasks. Tasks done, cancelled or held by someone alive are left out."""
        now = self._clock()
        return run_write(
            self._engine,
            lambda c: queue.claim_tasks(
                c, self._catalog, now, worker_id, task_ids, lease_seconds=lease_seconds
            ),
        )

    def take_ready(self, limit: int) -> list[publication.ReadyTask]:
        """Mark up to `limit` ready tasks as published to RabbitMQ, best first."""
        now = self._clock()
        return run_write(
            self._engine, lambda c: publication.take_ready(c, self._catalog, now, limit)
        )

    def unpublish(self, task_ids: Collection[int]) -> int:
        """Clear the published mark of QUEUED tasks the broker did not take."""
        return run_write(self._engine, lambda c: publication.unpublish(c, task_ids))

    def unpublish_all(self) -> int:
        """Clear the published mark of every QUEUED task: all are sent again."""
        return run_write(self._engine, publication.unpublish_all)

    def renew(
        self, worker_id: str, tokens: Sequence[str], *, lease_seconds: float = 60
    ) -> set[str]:
        """Extend these leases by `lease_seconds` from now; the tokens still held."""
        now = self._clock()
        return run_write(
            self._engine, lambda c: queue.renew(c, now, worker_id, tokens, lease_seconds)
        )

    def held_lease(self, token: str) -> queue.HeldLease | None:
        """The page task `token` currently leases (RUNNING under it), else None."""
        return run_read(self._engine, lambda c: queue.held_lease(c, self._catalog, token))

    def complete(self, results: Sequence[TaskResult]) -> list[bool]:
        """Record succeeded tasks; per result, whether it was accepted (False: stale token)."""
        if not results:
            return []
        now = self._clock()
        return run_write(self._engine, lambda c: queue.complete(c, self._catalog, now, results))

    def fail(
        self,
        task_id: int,
        token: str,
        error: str,
        traceback: str | None = None,
        *,
        retry: bool = True,
    ) -> State:
        """Record a failed attempt; the task's state after it (QUEUED, FAILED, CANCELLED)."""
        now = self._clock()
        return run_write(
            self._engine,
            lambda c: queue.fail(
                c, self._catalog, self._policy, now, task_id, token, error, traceback, retry=retry
            ),
        )

    def expire_leases(self, now: float | None = None) -> int:
        """Take back the tasks whose lease ended before `now` (default: the clock); how many.

        `math.inf` takes back every lease: right for a run that owns its store and starts
        after its predecessor died.
        """
        current = self._clock()
        cutoff = current if now is None else now
        return run_write(
            self._engine, lambda c: queue.expire_leases(c, self._catalog, current, cutoff)
        )

    def release(self, worker_id: str) -> int:
        """Give back `worker_id`'s leases without using an attempt (graceful stop); how many."""
        now = self._clock()
        return run_write(self._engine, lambda c: queue.release(c, self._catalog, now, worker_id))

    # the METS writer's outbox

    def pending_registrations(self, workspace_id: str, limit: int = 1000) -> list[Registration]:
        """Outputs of succeeded tasks not yet in the METS, in completion order."""
        return run_read(
            self._engine,
            lambda c: outbox.pending_registrations(c, self._catalog, workspace_id, limit),
        )

    def mark_registered(self, registration_ids: Sequence[int]) -> None:
        """Note that these outputs are in the METS now."""
        if registration_ids:
            run_write(self._engine, lambda c: outbox.mark_registered(c, registration_ids))

    # control

    def cancel(self, job_id: str) -> int:
        """Cancel a workflow or processing job; how many page tasks were cancelled."""
        now = self._clock()
        return run_write(self._engine, lambda c: control.cancel(c, self._catalog, now, job_id))

    def retry_failed(self, job_id: str) -> int:
        """Run a job's failed pages again; how many page tasks went back to the queue."""
        now = self._clock()
        return run_write(
            self._engine, lambda c: control.retry_failed(c, self._catalog, now, job_id)
        )

    def set_priority(self, job_id: str, priority: int) -> None:
        """Change the priority of the workflow job `job_id` is (or belongs to)."""
        run_write(self._engine, lambda c: control.set_priority(c, job_id, priority))

    # status

    def job(self, job_id: str) -> JobInfo:
        """A processing job."""
        return run_read(self._engine, lambda c: status.job_info(c, job_id))

    def workflow_job(self, workflow_job_id: str) -> WorkflowJobInfo:
        """A workflow job."""
        return run_read(self._engine, lambda c: status.workflow_job_info(c, workflow_job_id))

    def job_statuses(
        self, job_ids: Collection[str] = (), workflow_job_ids: Collection[str] = ()
    ) -> dict[str, JobStatus]:
        """State and end of many processing and workflow jobs in one read of a few queries,
        by id; unknown ids are left out."""
        return run_read(self._engine, lambda c: status.job_statuses(c, job_ids, workflow_job_ids))

    def jobs(self, workspace_id: str | None = None) -> list[JobInfo]:
        """All processing jobs (of one workspace), oldest first."""
        return run_read(self._engine, lambda c: status.list_jobs(c, workspace_id))

    def workflow_jobs(self, workspace_id: str | None = None) -> list[WorkflowJobInfo]:
        """All workflow jobs (of one workspace), oldest first."""
        return run_read(self._engine, lambda c: status.list_workflow_jobs(c, workspace_id))

    def progress(self, job_id: str) -> Progress:
        """Task counts and page outcomes of a workflow or processing job."""
        return run_read(self._engine, lambda c: status.progress(c, job_id))

    def failed_tasks(self, job_id: str) -> list[FailedTask]:
        """The page tasks of a job that failed for good, with error and traceback."""
        return run_read(self._engine, lambda c: status.failed_tasks(c, job_id))

    def page_tasks(self, job_id: str) -> list[TaskInfo]:
        """Every page task of a job with its state (per-page status)."""
        return run_read(self._engine, lambda c: status.page_tasks(c, job_id))

    def find_workflow_job(self, workspace_id: str, fingerprint: str) -> str | None:
        """The newest workflow job of this workspace submitted with this fingerprint."""
        return run_read(
            self._engine, lambda c: status.find_workflow_job(c, workspace_id, fingerprint)
        )

    # the workers of a distributed deployment

    def register_worker(
        self,
        worker_id: str,
        *,
        host: str,
        pid: int,
        processors: Sequence[str],
        capacity: int,
    ) -> None:
        """Record a starting `ocrswarm worker` process."""
        now = self._clock()
        run_write(
            self._engine,
            lambda c: workerregistry.register(
                c, now, worker_id, host=host, pid=pid, processors=processors, capacity=capacity
            ),
        )

    def worker_heartbeat(self, worker_id: str, running: int) -> bool:
        """Note that a worker is alive with `running` pages; False if it is not registered."""
        now = self._clock()
        return run_write(
            self._engine, lambda c: workerregistry.heartbeat(c, now, worker_id, running)
        )

    def stop_worker(self, worker_id: str) -> None:
        """Note a worker's clean stop."""
        now = self._clock()
        run_write(self._engine, lambda c: workerregistry.stop(c, now, worker_id))

    def list_workers(self) -> list[WorkerInfo]:
        """Every registered worker, oldest first (stopped ones too, with `stopped_at`)."""
        return run_read(self._engine, workerregistry.list_workers)
