"""The page-task queue inside the store: claim, renew, complete, fail, expire, release.

Every function is one transaction's worth of work on a connection the caller opened with
`database.run_write`, and handles a whole batch in a handful of statements: the queue costs
microseconds per task, not milliseconds.

Leases: a claim sets a task RUNNING with a fresh token `<task id>.<random>` and a deadline.
Only the holder of the current token may renew, complete or fail the task; once the lease
has expired and the task was handed out again, the old token is stale and its result is
discarded. Completion is idempotent: the same token completing again is accepted without
recording anything twice.

Cancelled jobs: a task that was RUNNING when its job was cancelled may still complete, and
its result is kept (the work is done; registering it costs nothing); if it fails, is released
or its lease expires instead, it ends CANCELLED rather than going back to the queue.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    ColumnElement,
    Connection,
    Row,
    String,
    Update,
    and_,
    any_,
    bindparam,
    cast,
    false,
    func,
    insert,
    or_,
    select,
    update,
)

from ocrswarm.engine.catalog import Catalog, JobFacts, WorkflowFacts
from ocrswarm.engine.propagation import cancel_later_steps, refresh_jobs, release_successors
from ocrswarm.engine.records import FileRef, TaskLease, TaskResult
from ocrswarm.engine.schema import files, jobs, task_state_in, task_state_is, tasks
from ocrswarm.engine.states import State, checked_sources
from ocrswarm.errors import UsageError

QUEUE_ORDER = (
    tasks.c.priority.desc(),
    tasks.c.workflow_job_id,
    tasks.c.page_index,
    tasks.c.step,
)
_CLAIMABLE = checked_sources(State.RUNNING, State.QUEUED)
_COMPLETABLE = checked_sources(State.SUCCESS, State.RUNNING)
_REQUEUEABLE = checked_sources(State.QUEUED, State.RUNNING)
_FAILABLE = checked_sources(State.FAILED, State.RUNNING)
_RUNNING_CANCELLABLE = checked_sources(State.CANCELLED, State.RUNNING)


class TaskNotFoundError(UsageError):
    """No page task has the given id."""


class InvalidResultError(UsageError):
    """A task result names files the task may not produce (wrong fileGrp or page)."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How long a failed task waits before its next attempt: base·2^(attempt−1), capped."""

    backoff_base: float = 1.0
    backoff_max: float = 300.0

    def delay(self, attempt: int) -> float:
        return float(min(self.backoff_max, self.backoff_base * 2 ** max(attempt - 1, 0)))


def task_id_of(token: str) -> int | None:
    """The task a lease token belongs to, or None for a malformed token."""
    head, dot, _ = token.partition(".")
    return int(head) if dot and head.isdigit() else None


def task_in(ready: CTE, *, postgresql: bool) -> ColumnElement[bool]:
    """`tasks.id IN (the ids of the CTE ready)`; on PostgreSQL `= ANY(ARRAY(…))`, which is
    a lookup of each id in the primary key. For the plain IN, the planner may hash-join a
    sequential scan of the whole table instead, trusting estimates that a big submission or
    a finished one made wrong: a cost that grows with the table on every claim."""
    if postgresql:
        return tasks.c.id == any_(func.array(select(ready.c.id).scalar_subquery()))
    return tasks.c.id.in_(select(ready.c.id))


# What every claim sets (with binds b_token_suffix, b_worker, b_lease_until, b_now) and
# returns: one lease, whichever way the task was chosen.
_LEASE_VALUES: dict[str, Any] = {
    "state": State.RUNNING,
    "token": cast(tasks.c.id, String).concat(bindparam("b_token_suffix")),
    "worker_id": bindparam("b_worker"),
    "lease_until": bindparam("b_lease_until"),
    "attempts": tasks.c.attempts + 1,
    "not_before": None,
    "started_at": bindparam("b_now"),
}
_LEASED_COLUMNS = (
    tasks.c.id,
    tasks.c.token,
    tasks.c.job_id,
    tasks.c.workflow_job_id,
    tasks.c.page_index,
    tasks.c.step,
    tasks.c.page_id,
    tasks.c.priority,
    tasks.c.attempts,
)


def _claim_statement(*, by_executable: bool, postgresql: bool) -> Update:
    """UPDATE … RETURNING that leases the best ready tasks; built once, run with binds.

    The candidates come from a CTE, which runs once: as a plain `IN (subquery)`, PostgreSQL
    may rescan a LIMITed SKIP LOCKED subquery and hand out more than `limit` tasks.
    """
    ready = select(tasks.c.id).where(
        task_state_is(State.QUEUED),
        tasks.c.published == false(),
        or_(tasks.c.not_before.is_(None), tasks.c.not_before <= bindparam("b_now")),
    )
    if by_executable:
        wanted = select(jobs.c.id).where(
            jobs.c.executable.in_(bindparam("b_executables", expanding=True))
        )
        ready = ready.where(tasks.c.job_id.in_(wanted))
    ready_ids = (
        ready.order_by(*QUEUE_ORDER)
        .limit(bindparam("b_limit"))
        .with_for_update(skip_locked=True, of=tasks, key_share=True)
        .cte("ready")
        .prefix_with("MATERIALIZED", dialect="postgresql")
    )
    return (
        update(tasks)
        .where(task_in(ready_ids, postgresql=postgresql), task_state_in(_CLAIMABLE))
        .values(**_LEASE_VALUES)
        .returning(*_LEASED_COLUMNS)
    )


# by (executables given, PostgreSQL)
_CLAIMS = {
    (by_executable, postgresql): _claim_statement(
        by_executable=by_executable, postgresql=postgresql
    )
    for by_executable in (False, True)
    for postgresql in (False, True)
}
# no ORDER BY: sorted by id in Python, so the planner never walks the primary key instead
_INPUT_FILES = select(
    files.c.id,
    files.c.workflow_job_id,
    files.c.job_id,
    files.c.page_id,
    files.c.file_grp,
    files.c.file_id,
    files.c.mimetype,
    files.c.href,
).where(
    files.c.workflow_job_id.in_(bindparam("b_workflows", expanding=True)),
    files.c.page_id.in_(bindparam("b_pages", expanding=True)),
    files.c.file_grp.in_(bindparam("b_grps", expanding=True)),
)
_JOB_STATES = select(jobs.c.id, jobs.c.state).where(
    jobs.c.id.in_(bindparam("b_ids", expanding=True))
)


def claim(
    connection: Connection,
    catalog: Catalog,
    now: float,
    worker_id: str,
    *,
    executables: Collection[str] | None,
    limit: int,
    lease_seconds: float,
) -> list[TaskLease]:
    """Lease up to `limit` ready tasks to `worker_id`, best first (see QUEUE_ORDER)."""
    if limit < 1 or (executables is not None and not executables):
        return []
    lease_until = now + lease_seconds
    binds: dict[str, object] = {
        "b_now": now,
        "b_limit": limit,
        "b_token_suffix": f".{secrets.token_hex(12)}",
        "b_worker": worker_id,
        "b_lease_until": lease_until,
    }
    if executables is not None:
        binds["b_executables"] = sorted(executables)
    statement = _CLAIMS[(executables is not None, connection.dialect.name == "postgresql")]
    claimed = connection.execute(statement, binds).all()
    return _leases(connection, catalog, now, claimed, lease_until)


def _leases(
    connection: Connection,
    catalog: Catalog,
    now: float,
    claimed: Sequence[Row[Any]],
    lease_until: float,
) -> list[TaskLease]:
    """The self-contained leases of freshly claimed task rows, best first."""
    rows = sorted(claimed, key=lambda r: (-r.priority, r.workflow_job_id, r.page_index, r.step))
    if not rows:
        return []
    job_facts = catalog.jobs(connection, {row.job_id for row in rows})
    workflows = {w: catalog.workflow(connection, w) for w in {row.workflow_job_id for row in rows}}
    inputs = _resolve_inputs(connection, rows, job_facts, workflows)
    _mark_jobs_running(connection, catalog, job_facts.keys(), now)
    leases = []
    for row in rows:
        job = job_facts[row.job_id]
        workflow = workflows[row.workflow_job_id]
        leases.append(
            TaskLease(
                task_id=row.id,
                token=row.token,
                job_id=job.uid,
                workflow_job_id=workflow.public_uid,
                executable=job.executable,
                parameters=job.parameters,
                page_id=row.page_id,
                inputs=inputs[row.id],
                input_file_grps=job.input_file_grps,
                output_file_grps=job.output_file_grps,
                workspace_id=workflow.workspace_id,
                workspace_dir=workflow.workspace_dir,
                attempt=row.attempts,
                max_attempts=job.max_attempts,
                lease_until=lease_until,
            )
        )
    return leases


_CLAIM_BY_ID_CANDIDATES = (
    select(tasks.c.id, tasks.c.state, tasks.c.attempts, jobs.c.max_attempts)
    .join(jobs, jobs.c.id == tasks.c.job_id)
    .where(
        tasks.c.id.in_(bindparam("b_ids", expanding=True)),
        or_(
            and_(
                task_state_is(State.QUEUED),
                or_(tasks.c.not_before.is_(None), tasks.c.not_before <= bindparam("b_now")),
            ),
            and_(task_state_is(State.RUNNING), tasks.c.lease_until < bindparam("b_now")),
        ),
    )
    .order_by(tasks.c.id)
    .with_for_update(of=tasks, skip_locked=True, key_share=True)
)
_CLAIM_BY_ID = (
    update(tasks)
    .where(tasks.c.id.in_(bindparam("b_ids", expanding=True)), task_state_in(_CLAIMABLE))
    .values(**_LEASE_VALUES, published=False)
    .returning(*_LEASED_COLUMNS)
)


def claim_tasks(
    connection: Connection,
    catalog: Catalog,
    now: float,
    worker_id: str,
    task_ids: Collection[int],
    *,
    lease_seconds: float,
) -> list[TaskLease]:
    """Lease these tasks to `worker_id` if they may run now: QUEUED and due, or RUNNING
    under a lease that has expired (its holder vanished) with attempts left.

    This is how a message from RabbitMQ becomes work: a task that is done, cancelled,
    waiting for its backoff or held under a live lease is simply not returned, and the
    message that named it is acknowledged without doing anything.
    """
    if not task_ids:
        return []
    binds: dict[str, object] = {"b_ids": sorted(set(task_ids)), "b_now": now}
    candidates = [
        row.id
        for row in connection.execute(_CLAIM_BY_ID_CANDIDATES, binds)
        if row.state == State.QUEUED or row.attempts < row.max_attempts
    ]
    if not candidates:
        return []
    lease_until = now + lease_seconds
    claimed = connection.execute(
        _CLAIM_BY_ID,
        {
            "b_ids": candidates,
            "b_now": now,
            "b_token_suffix": f".{secrets.token_hex(12)}",
            "b_worker": worker_id,
            "b_lease_until": lease_until,
        },
    ).all()
    return _leases(connection, catalog, now, claimed, lease_until)


def _resolve_inputs(
    connection: Connection,
    rows: Sequence[Row[Any]],
    job_facts: dict[int, JobFacts],
    workflows: dict[int, WorkflowFacts],
) -> dict[int, list[FileRef]]:
    """Each claimed task's input files, from its own workflow job's files (the METS inputs
    it was submitted with, its predecessors' outputs) or else from the outputs of the jobs
    it depends on; in the order of its input fileGrps."""
    sources = set(workflows)
    for workflow in workflows.values():
        sources |= workflow.dependency_workflow_ids
    grps = {grp for job in job_facts.values() for grp in job.input_file_grps}
    page_ids = {row.page_id for row in rows}
    own: dict[tuple[int, str, str], list[FileRef]] = defaultdict(list)
    foreign: dict[tuple[int, str, str], list[FileRef]] = defaultdict(list)
    binds = {"b_workflows": sorted(sources), "b_pages": sorted(page_ids), "b_grps": sorted(grps)}
    for file in sorted(connection.execute(_INPUT_FILES, binds), key=lambda row: row.id):
        ref = FileRef(file.file_grp, file.file_id, file.mimetype, file.href, file.page_id)
        own[(file.workflow_job_id, file.page_id, file.file_grp)].append(ref)
        if file.job_id is not None:
            foreign[(file.job_id, file.page_id, file.file_grp)].append(ref)
    resolved: dict[int, list[FileRef]] = {}
    for row in rows:
        workflow_id, page_id = row.workflow_job_id, row.page_id
        dependencies = sorted(workflows[workflow_id].dependency_job_ids)
        refs: list[FileRef] = []
        for grp in job_facts[row.job_id].input_file_grps:
            found = own.get((workflow_id, page_id, grp))
            if not found:
                found = [
                    ref for dep in dependencies for ref in foreign.get((dep, page_id, grp), ())
                ]
            refs.extend(found)
        resolved[row.id] = refs
    return resolved


def _mark_jobs_running(
    connection: Connection, catalog: Catalog, job_ids: Collection[int], now: float
) -> None:
    """Re-derive the states of jobs that do not show RUNNING yet.

    A job with a RUNNING task is RUNNING (states.job_state), so jobs already showing it need
    no locking or counting: that keeps concurrent claims from queueing on the job rows.
    """
    not_yet = [
        job_id
        for job_id, state in connection.execute(_JOB_STATES, {"b_ids": sorted(job_ids)})
        if state != State.RUNNING
    ]
    if not_yet:
        refresh_jobs(connection, catalog, not_yet, now)


def renew(
    connection: Connection, now: float, worker_id: str, tokens: Sequence[str], lease_seconds: float
) -> set[str]:
    """Extend the leases `worker_id` still holds; the tokens that are still its own."""
    ids = [task_id for token in tokens if (task_id := task_id_of(token)) is not None]
    if not ids:
        return set()
    return set(
        connection.execute(
            update(tasks)
            .where(
                tasks.c.id.in_(ids),
                tasks.c.token.in_(list(tokens)),
                tasks.c.state == State.RUNNING,
                tasks.c.worker_id == worker_id,
            )
            .values(lease_until=now + lease_seconds)
            .returning(tasks.c.token)
        ).scalars()
    )


@dataclass(frozen=True, slots=True)
class HeldLease:
    """A page task under a current lease: what its holder may write (files of its page in
    its output fileGrps, in its workspace)."""

    task_id: int
    workspace_id: str
    page_id: str
    output_file_grps: tuple[str, ...]


def held_lease(connection: Connection, catalog: Catalog, token: str) -> HeldLease | None:
    """The task `token` is the current lease of (RUNNING under it), else None.

    Like `complete`, a lease that has run out but was not yet taken back still counts."""
    task_id = task_id_of(token)
    if task_id is None:
        return None
    row = connection.execute(
        select(tasks.c.job_id, tasks.c.workflow_job_id, tasks.c.page_id).where(
            tasks.c.id == task_id, tasks.c.token == token, tasks.c.state == State.RUNNING
        )
    ).one_or_none()
    if row is None:
        return None
    job = catalog.job(connection, row.job_id)
    workflow = catalog.workflow(connection, row.workflow_job_id)
    return HeldLease(task_id, workflow.workspace_id, row.page_id, job.output_file_grps)


_COMPLETE = (
    update(tasks)
    .where(
        tasks.c.id.in_(bindparam("b_ids", expanding=True)),
        tasks.c.token.in_(bindparam("b_tokens", expanding=True)),
        task_state_in(_COMPLETABLE),
    )
    .values(state=State.SUCCESS, finished_at=bindparam("b_now"), lease_until=None)
    .returning(
        tasks.c.id,
        tasks.c.token,
        tasks.c.job_id,
        tasks.c.workflow_job_id,
        tasks.c.page_index,
        tasks.c.step,
        tasks.c.page_id,
    )
)
_ALREADY_COMPLETED = select(tasks.c.token).where(
    tasks.c.id.in_(bindparam("b_ids", expanding=True)),
    tasks.c.token.in_(bindparam("b_tokens", expanding=True)),
    tasks.c.state == State.SUCCESS,
)
_INSERT_FILES = insert(files)


def complete(
    connection: Connection, catalog: Catalog, now: float, results: Sequence[TaskResult]
) -> list[bool]:
    """Record succeeded tasks with their outputs; for each result whether it was accepted.

    In the same transaction: outputs go to the METS writer's outbox, successors on the same
    page whose predecessors all succeeded become QUEUED, job states follow. A result whose
    token is stale is discarded (False); one already recorded is accepted again (True).
    """
    first_by_token: dict[str, TaskResult] = {}
    for result in results:
        if task_id_of(result.token) == result.task_id:
            first_by_token.setdefault(result.token, result)
    if not first_by_token:
        return [False] * len(results)
    binds = {
        "b_ids": [r.task_id for r in first_by_token.values()],
        "b_tokens": list(first_by_token),
        "b_now": now,
    }
    done = connection.execute(_COMPLETE, binds).all()
    accepted = {row.token for row in done}
    repeated = [token for token in first_by_token if token not in accepted]
    if repeated:
        binds = {"b_ids": [first_by_token[t].task_id for t in repeated], "b_tokens": repeated}
        accepted.update(connection.execute(_ALREADY_COMPLETED, binds).scalars())
    if done:
        _record_outputs(connection, catalog, done, first_by_token)
        page_steps = [(row.workflow_job_id, row.page_index, row.step) for row in done]
        touched = {row.job_id for row in done}
        touched |= release_successors(connection, catalog, page_steps)
        refresh_jobs(connection, catalog, touched, now)
    return [result.token in accepted for result in results]


def _record_outputs(
    connection: Connection,
    catalog: Catalog,
    done: Sequence[Row[Any]],
    results: dict[str, TaskResult],
) -> None:
    job_facts = catalog.jobs(connection, {row.job_id for row in done})
    file_rows = []
    for row in done:
        job = job_facts[row.job_id]
        workspace_id = catalog.workflow(connection, row.workflow_job_id).workspace_id
        for ref in results[row.token].outputs:
            if ref.file_grp not in job.output_file_grps or ref.page_id != row.page_id:
                raise InvalidResultError(
                    f"task {row.id} ({job.executable}, page {row.page_id}) returned file "
                    f"{ref.file_id} for fileGrp {ref.file_grp}, page {ref.page_id}; it may "
                    f"only write fileGrps {', '.join(job.output_file_grps)} of its own page"
                )
            file_rows.append(
                {
                    "workspace_id": workspace_id,
                    "workflow_job_id": row.workflow_job_id,
                    "job_id": row.job_id,
                    "task_id": row.id,
                    "page_id": ref.page_id,
                    "file_grp": ref.file_grp,
                    "file_id": ref.file_id,
                    "mimetype": ref.mimetype,
                    "href": ref.href,
                    "registered": False,
                }
            )
    if file_rows:
        connection.execute(_INSERT_FILES, file_rows)


def fail(
    connection: Connection,
    catalog: Catalog,
    policy: RetryPolicy,
    now: float,
    task_id: int,
    token: str,
    error: str,
    traceback: str | None,
    *,
    retry: bool,
) -> State:
    """Record a failed attempt: back to the queue after a backoff while attempts remain
    (and `retry`), else FAILED with the later steps of its page CANCELLED.

    A stale token changes nothing; the task's current state is returned either way.
    """
    row = connection.execute(
        select(
            tasks.c.state,
            tasks.c.token,
            tasks.c.attempts,
            tasks.c.job_id,
            tasks.c.workflow_job_id,
            tasks.c.page_index,
            tasks.c.step,
            jobs.c.cancel_requested,
        )
        .join(jobs, jobs.c.id == tasks.c.job_id)
        .where(tasks.c.id == task_id)
        .with_for_update(of=tasks, key_share=True)
    ).one_or_none()
    if row is None:
        raise TaskNotFoundError(f"no page task {task_id}")
    if row.state != State.RUNNING or row.token != token:
        return State(row.state)
    job = catalog.job(connection, row.job_id)
    if row.cancel_requested:
        new = State.CANCELLED
    elif retry and row.attempts < job.max_attempts:
        new = State.QUEUED
    else:
        new = State.FAILED
    values: dict[str, object] = {
        "state": new,
        "token": None,
        "lease_until": None,
        "published": False,
        "error": error,
        "traceback": traceback,
    }
    if new is State.QUEUED:
        values["not_before"] = now + policy.delay(row.attempts)
    else:
        values["finished_at"] = now
    sources = {State.QUEUED: _REQUEUEABLE, State.FAILED: _FAILABLE}.get(new, _RUNNING_CANCELLABLE)
    connection.execute(
        update(tasks).where(tasks.c.id == task_id, task_state_in(sources)).values(values)
    )
    touched = {row.job_id}
    if new is not State.QUEUED:
        origin = (row.workflow_job_id, row.page_index, row.step)
        reason = f"an earlier step of this page ({job.executable}) ended {new}"
        touched |= cancel_later_steps(connection, catalog, [origin], now, reason)[0]
    refresh_jobs(connection, catalog, touched, now)
    return new


def expire_leases(connection: Connection, catalog: Catalog, now: float, cutoff: float) -> int:
    """Take back every RUNNING task whose lease ended before `cutoff`; how many.

    An expired lease counts as a used attempt (its worker may have died on this very page):
    back to the queue while attempts remain, else FAILED. Leases being completed right now
    by another transaction are skipped (PostgreSQL), not waited for.
    """
    rows = connection.execute(
        select(
            tasks.c.id,
            tasks.c.job_id,
            tasks.c.workflow_job_id,
            tasks.c.page_index,
            tasks.c.step,
            tasks.c.attempts,
            tasks.c.worker_id,
            jobs.c.max_attempts,
            jobs.c.cancel_requested,
        )
        .join(jobs, jobs.c.id == tasks.c.job_id)
        .where(task_state_is(State.RUNNING), tasks.c.lease_until < cutoff)
        .order_by(tasks.c.id)
        .with_for_update(of=tasks, skip_locked=True, key_share=True)
    ).all()
    if not rows:
        return 0
    updates = []
    ended = []
    for row in rows:
        reason = (
            f"the lease of worker {row.worker_id} expired on attempt {row.attempts} of "
            f"{row.max_attempts} (the worker stopped, was killed or lost its connection)"
        )
        if row.cancel_requested:
            new = State.CANCELLED
        elif row.attempts < row.max_attempts:
            new = State.QUEUED
        else:
            new = State.FAILED
        if new is not State.QUEUED:
            ended.append((row.workflow_job_id, row.page_index, row.step))
        updates.append(
            {
                "b_id": row.id,
                "b_state": new,
                "b_error": reason,
                "b_finished": None if new is State.QUEUED else now,
            }
        )
    connection.execute(
        update(tasks)
        .where(tasks.c.id == bindparam("b_id"), task_state_in(_REQUEUEABLE))
        .values(
            state=bindparam("b_state"),
            error=bindparam("b_error"),
            finished_at=bindparam("b_finished"),
            token=None,
            lease_until=None,
            traceback=None,
            published=False,
        ),
        updates,
    )
    touched = {row.job_id for row in rows}
    if ended:
        reason = "an earlier step of this page ended without success (its lease expired)"
        touched |= cancel_later_steps(connection, catalog, ended, now, reason)[0]
    refresh_jobs(connection, catalog, touched, now)
    return len(rows)


def release(connection: Connection, catalog: Catalog, now: float, worker_id: str) -> int:
    """Give back every lease `worker_id` holds (graceful shutdown) without using an attempt."""
    rows = connection.execute(
        select(
            tasks.c.id,
            tasks.c.job_id,
            tasks.c.workflow_job_id,
            tasks.c.page_index,
            tasks.c.step,
            jobs.c.cancel_requested,
        )
        .join(jobs, jobs.c.id == tasks.c.job_id)
        .where(task_state_is(State.RUNNING), tasks.c.worker_id == worker_id)
        .order_by(tasks.c.id)
        .with_for_update(of=tasks, key_share=True)
    ).all()
    if not rows:
        return 0
    cancelled = [row for row in rows if row.cancel_requested]
    requeued = [row.id for row in rows if not row.cancel_requested]
    if requeued:
        connection.execute(
            update(tasks)
            .where(tasks.c.id.in_(requeued), task_state_in(_REQUEUEABLE))
            .values(
                state=State.QUEUED,
                attempts=tasks.c.attempts - 1,
                token=None,
                lease_until=None,
                worker_id=None,
                published=False,
            )
        )
    touched = {row.job_id for row in rows}
    if cancelled:
        connection.execute(
            update(tasks)
            .where(
                tasks.c.id.in_([row.id for row in cancelled]),
                task_state_in(_RUNNING_CANCELLABLE),
            )
            .values(state=State.CANCELLED, token=None, lease_until=None, finished_at=now)
        )
        origins = [(row.workflow_job_id, row.page_index, row.step) for row in cancelled]
        touched |= cancel_later_steps(connection, catalog, origins, now, "job cancelled")[0]
    refresh_jobs(connection, catalog, touched, now)
    return len(rows)
