"""The one state enum of jobs and page tasks, the page-task transition table, and job states.

OCR-D's Web API names seven states; we use the same seven strings for workflow jobs,
processing jobs and page tasks alike. A page task moves only along `TRANSITIONS`; a job's
state is never set directly but derived from its tasks' states by `job_state`, so the two can
never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

from ocrswarm.errors import OcrswarmError


class State(StrEnum):
    """A job's or page task's state; the values are exactly OCR-D's strings.

    For a page task: CACHED waits for its predecessors on the same page (or for the jobs its
    job depends on); QUEUED is ready (perhaps not before a backoff time); RUNNING is leased
    by a worker; SUCCESS is done; FAILED has used up its attempts; CANCELLED will not run
    (its job was cancelled, or an earlier step of its page failed).
    """

    UNSET = "UNSET"
    CACHED = "CACHED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


UNFINISHED: frozenset[State] = frozenset({State.CACHED, State.QUEUED, State.RUNNING})
FINISHED: frozenset[State] = frozenset({State.SUCCESS, State.FAILED, State.CANCELLED})

# Every move a page task may make. UNSET is the state before the task exists.
TRANSITIONS: Mapping[State, frozenset[State]] = {
    State.UNSET: frozenset({State.CACHED, State.QUEUED}),
    # ready, or cancelled (job cancelled, earlier step failed, a depended-on job failed)
    State.CACHED: frozenset({State.QUEUED, State.CANCELLED}),
    # claimed, or cancelled
    State.QUEUED: frozenset({State.RUNNING, State.CANCELLED}),
    # done; failed for good; cancelled (its job was cancelled meanwhile); back to the queue
    # (retry after an error, expired lease, released at shutdown)
    State.RUNNING: frozenset({State.SUCCESS, State.FAILED, State.CANCELLED, State.QUEUED}),
    State.SUCCESS: frozenset(),
    # retry_failed: back to the queue, or waiting again for retried predecessors
    State.FAILED: frozenset({State.QUEUED, State.CACHED}),
    State.CANCELLED: frozenset({State.QUEUED, State.CACHED}),
}


class TransitionError(OcrswarmError):
    """A page task was asked to move in a way the transition table forbids."""


def check_transition(old: State, new: State) -> None:
    """Raise TransitionError unless a page task may move from `old` to `new`."""
    if new not in TRANSITIONS[old]:
        allowed = ", ".join(sorted(TRANSITIONS[old])) or "nothing (final state)"
        raise TransitionError(f"a page task cannot go from {old} to {new}; allowed: {allowed}")


def job_state(counts: Mapping[State, int]) -> State:
    """A job's state derived from how many of its tasks are in each state.

    Only whether a state occurs matters, never how often, so callers may pass 1 for "some".
    - no tasks (UNSET ones do not count): UNSET;
    - some unfinished: RUNNING once anything runs or has finished (work is under way),
      else QUEUED if any task is ready, else CACHED (everything waits);
    - all finished: SUCCESS when all succeeded, FAILED when any failed, else CANCELLED.
    OCR-D's `job-simple` view (FAILED for cancelled jobs too) is a presentation of this.
    The same rule gives a workflow job's state from its processing jobs' states.
    """
    present = {state for state, count in counts.items() if count > 0} - {State.UNSET}
    if not present:
        return State.UNSET
    if present & UNFINISHED:
        if present & ({State.RUNNING} | FINISHED):
            return State.RUNNING
        return State.QUEUED if State.QUEUED in present else State.CACHED
    if present == {State.SUCCESS}:
        return State.SUCCESS
    return State.FAILED if State.FAILED in present else State.CANCELLED


def checked_sources(new: State, *olds: State) -> tuple[State, ...]:
    """`olds`, after checking that a page task may move from each of them to `new`.

    Every statement that changes task states builds its `state IN (…)` condition with this,
    so no query can make a move the table forbids.
    """
    for old in olds:
        check_transition(old, new)
    return olds
