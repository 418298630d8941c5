"""What follows when page tasks change state, in the same transaction as the change.

- a task's later steps on the same page are cancelled when it fails or is cancelled;
- a processing job's state is re-derived from its tasks (states.job_state), and a workflow
  job's from its processing jobs;
- a job that succeeds releases the workflow jobs waiting for it (depends_on); one that
  fails or is cancelled cancels them, and so on down the chain.

Job rows are locked (SELECT … FOR NO KEY UPDATE, in id order) before their tasks are
counted, so two transactions that finish a job's last tasks concurrently on PostgreSQL
cannot both see the other's task as still running; SQLite's single writer needs no such
care. Every lock is FOR NO KEY UPDATE, never FOR UPDATE: the key-share locks that foreign
key checks take (inserting a file row key-shares its job) must not conflict with it, or
two completions deadlock.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping

from sqlalchemy import (
    ColumnElement,
    Connection,
    and_,
    bindparam,
    case,
    false,
    func,
    literal,
    select,
    tuple_,
    update,
)

from ocrswarm.engine.catalog import Catalog
from ocrswarm.engine.schema import (
    job_dependencies,
    jobs,
    task_state_in,
    task_state_is,
    tasks,
    workflow_jobs,
)
from ocrswarm.engine.states import FINISHED, State, checked_sources, job_state

TASK_STATES = (
    State.CACHED,
    State.QUEUED,
    State.RUNNING,
    State.SUCCESS,
    State.FAILED,
    State.CANCELLED,
)
_CANCELLABLE = checked_sources(State.CANCELLED, State.CACHED, State.QUEUED)
_RELEASABLE = checked_sources(State.QUEUED, State.CACHED)

# (workflow job id, page index, step) of a task
PageStep = tuple[int, int, int]


def cancel_later_steps(
    connection: Connection, catalog: Catalog, origins: Iterable[PageStep], now: float, reason: str
) -> tuple[set[int], int]:
    """Cancel the waiting tasks that need the tasks at `origins` (same page, later steps).

    Returns the ids of the jobs those tasks belong to, and how many were cancelled.
    """
    targets: set[PageStep] = set()
    for workflow_id, page_index, step in origins:
        for later in catalog.workflow(connection, workflow_id).downstream[step]:
            targets.add((workflow_id, page_index, later))
    if not targets:
        return set(), 0
    result = connection.execute(
        update(tasks)
        .where(
            tasks.c.workflow_job_id == bindparam("b_workflow"),
            tasks.c.page_index == bindparam("b_page"),
            tasks.c.step == bindparam("b_step"),
            task_state_in(_CANCELLABLE),
        )
        .values(state=State.CANCELLED, error=reason, finished_at=now),
        [{"b_workflow": w, "b_page": p, "b_step": s} for w, p, s in sorted(targets)],
    )
    job_ids = _jobs_of_steps(connection, catalog, {(w, s) for w, _, s in targets})
    return job_ids, result.rowcount


_REMAINING = tasks.c.waiting - bindparam("b_count")
_COUNT_DOWN = (
    update(tasks)
    .where(
        tasks.c.workflow_job_id == bindparam("b_workflow"),
        tasks.c.page_index == bindparam("b_page"),
        tasks.c.step == bindparam("b_step"),
        task_state_in(_RELEASABLE),
    )
    .values(
        waiting=_REMAINING,
        state=case((_REMAINING <= 0, State.QUEUED), else_=tasks.c.state),
    )
)


def release_successors(
    connection: Connection, catalog: Catalog, done: Iterable[PageStep]
) -> set[int]:
    """Count down the successors of succeeded tasks; those with nothing left to wait for
    become QUEUED. Returns the ids of the successors' jobs."""
    counts: dict[PageStep, int] = defaultdict(int)
    for workflow_id, page_index, step in done:
        for succ in catalog.workflow(connection, workflow_id).successors[step]:
            counts[(workflow_id, page_index, succ)] += 1
    if not counts:
        return set()
    connection.execute(
        _COUNT_DOWN,
        [
            {"b_workflow": w, "b_page": p, "b_step": s, "b_count": n}
            for (w, p, s), n in sorted(counts.items())
        ],
    )
    return _jobs_of_steps(connection, catalog, {(w, s) for w, _, s in counts})


def _jobs_of_steps(
    connection: Connection, catalog: Catalog, steps: Iterable[tuple[int, int]]
) -> set[int]:
    return {catalog.workflow(connection, w).job_ids[s] for w, s in steps}


def refresh_jobs(
    connection: Connection, catalog: Catalog, job_ids: Collection[int], now: float
) -> None:
    """Re-derive the states of `job_ids` and follow every consequence to the end."""
    pending = set(job_ids)
    while pending:
        changed = _refresh_job_states(connection, pending, now)
        pending = set()
        if not changed:
            break
        workflow_ids = {catalog.job(connection, job_id).workflow_job_id for job_id in changed}
        _refresh_workflow_states(connection, workflow_ids)
        succeeded = [job_id for job_id, state in changed.items() if state is State.SUCCESS]
        broken = {
            job_id: state
            for job_id, state in changed.items()
            if state in (State.FAILED, State.CANCELLED)
        }
        pending |= _release_dependents(connection, catalog, succeeded)
        pending |= _cancel_dependents(connection, catalog, broken, now)


_LOCK_JOBS = (
    select(jobs.c.id, jobs.c.state)
    .where(jobs.c.id.in_(bindparam("b_ids", expanding=True)))
    .order_by(jobs.c.id)
    .with_for_update(key_share=True)
)


def _state_probe(state: State) -> ColumnElement[bool]:
    """Whether the job of the current `jobs` row has a task in `state`: one index seek.

    Written as a seek in the (job_id, state, id) index, "the first entry at or after
    (job, state)", which no other access path can answer cheaply. The obvious EXISTS or
    LIMIT 1 lets PostgreSQL, trusting its statistics, walk the whole table (or its primary
    key) whenever a state it believes common has no task at all in this job.
    """
    position = tuple_(tasks.c.job_id, tasks.c.state, tasks.c.id)
    start = tuple_(jobs.c.id, literal(state.value, literal_execute=True), literal(0))
    first = (
        select(and_(tasks.c.job_id == jobs.c.id, task_state_is(state)))
        .where(position >= start)
        .order_by(tasks.c.job_id, tasks.c.state, tasks.c.id)
        .limit(1)
        .correlate(jobs)
        .scalar_subquery()
    )
    return func.coalesce(first, false())


# per job, whether any of its tasks is in each state: six index seeks, never a count
_STATES_PRESENT = select(
    jobs.c.id, *(_state_probe(state).label(state.value) for state in TASK_STATES)
).where(jobs.c.id.in_(bindparam("b_ids", expanding=True)))
_SET_JOB_STATE = (
    update(jobs)
    .where(jobs.c.id == bindparam("b_id"))
    .values(state=bindparam("b_state"), finished_at=bindparam("b_finished"))
)


def _refresh_job_states(
    connection: Connection, job_ids: Collection[int], now: float
) -> dict[int, State]:
    """Lock the jobs, derive their states from their tasks; the ones that changed."""
    binds = {"b_ids": sorted(job_ids)}
    stored = {row.id: State(row.state) for row in connection.execute(_LOCK_JOBS, binds)}
    changed: dict[int, State] = {}
    for row in connection.execute(_STATES_PRESENT, binds):
        mapping = row._mapping
        derived = job_state({state: int(mapping[state.value]) for state in TASK_STATES})
        if derived is not stored[row.id]:
            changed[row.id] = derived
    if changed:
        connection.execute(
            _SET_JOB_STATE,
            [
                {"b_id": job_id, "b_state": state, "b_finished": now if state in FINISHED else None}
                for job_id, state in sorted(changed.items())
            ],
        )
    return changed


def _refresh_workflow_states(connection: Connection, workflow_ids: Collection[int]) -> None:
    ids = sorted(workflow_ids)
    stored = {
        row.id: State(row.state)
        for row in connection.execute(
            select(workflow_jobs.c.id, workflow_jobs.c.state)
            .where(workflow_jobs.c.id.in_(ids))
            .order_by(workflow_jobs.c.id)
            .with_for_update(key_share=True)
        )
    }
    counts: dict[int, dict[State, int]] = {workflow_id: {} for workflow_id in ids}
    for row in connection.execute(
        select(jobs.c.workflow_job_id, jobs.c.state, func.count())
        .where(jobs.c.workflow_job_id.in_(ids))
        .group_by(jobs.c.workflow_job_id, jobs.c.state)
    ):
        counts[row[0]][State(row[1])] = row[2]
    updates = [
        {"b_id": workflow_id, "b_state": job_state(counts[workflow_id])}
        for workflow_id in ids
        if job_state(counts[workflow_id]) is not stored[workflow_id]
    ]
    if updates:
        connection.execute(
            update(workflow_jobs)
            .where(workflow_jobs.c.id == bindparam("b_id"))
            .values(state=bindparam("b_state")),
            updates,
        )


def _held_dependents(connection: Connection, job_ids: Collection[int]) -> list[int]:
    """The held workflow jobs that depend on any of `job_ids`, locked, in id order."""
    if not job_ids:
        return []
    return list(
        connection.execute(
            select(workflow_jobs.c.id)
            .where(
                workflow_jobs.c.held,
                workflow_jobs.c.id.in_(
                    select(job_dependencies.c.workflow_job_id).where(
                        job_dependencies.c.depends_on_job_id.in_(sorted(job_ids))
                    )
                ),
            )
            .order_by(workflow_jobs.c.id)
            .with_for_update(key_share=True)
        ).scalars()
    )


def _release_dependents(
    connection: Connection, catalog: Catalog, succeeded: Collection[int]
) -> set[int]:
    """Workflow jobs whose dependencies all succeeded stop waiting; their jobs' ids."""
    touched: set[int] = set()
    for workflow_id in _held_dependents(connection, succeeded):
        unfinished = connection.execute(
            select(func.count())
            .select_from(
                job_dependencies.join(jobs, jobs.c.id == job_dependencies.c.depends_on_job_id)
            )
            .where(job_dependencies.c.workflow_job_id == workflow_id, jobs.c.state != State.SUCCESS)
        ).scalar_one()
        if unfinished:
            continue
        connection.execute(
            update(workflow_jobs).where(workflow_jobs.c.id == workflow_id).values(held=False)
        )
        remaining = tasks.c.waiting - 1
        connection.execute(
            update(tasks)
            .where(tasks.c.workflow_job_id == workflow_id, task_state_in(_RELEASABLE))
            .values(
                waiting=remaining, state=case((remaining <= 0, State.QUEUED), else_=tasks.c.state)
            )
        )
        touched |= set(catalog.workflow(connection, workflow_id).job_ids)
    return touched


def _cancel_dependents(
    connection: Connection, catalog: Catalog, broken: Mapping[int, State], now: float
) -> set[int]:
    """Workflow jobs waiting for a job that failed or was cancelled will never run."""
    touched: set[int] = set()
    for workflow_id in _held_dependents(connection, broken):
        facts = catalog.workflow(connection, workflow_id)
        culprit = min(facts.dependency_job_ids & broken.keys())
        reason = (
            f"job {catalog.job(connection, culprit).uid}, which this job depends on, "
            f"ended {broken[culprit]}"
        )
        connection.execute(
            update(tasks)
            .where(tasks.c.workflow_job_id == workflow_id, task_state_in(_CANCELLABLE))
            .values(state=State.CANCELLED, error=reason, finished_at=now)
        )
        touched |= set(facts.job_ids)
    return touched
