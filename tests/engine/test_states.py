"""The one state enum, the page-task transition table and the derived job state."""

from __future__ import annotations

import itertools

import pytest

from ocrswarm.engine.states import (
    FINISHED,
    TRANSITIONS,
    UNFINISHED,
    State,
    TransitionError,
    check_transition,
    checked_sources,
    job_state,
)

S = State


def test_values_are_exactly_ocrds_job_states() -> None:
    assert {state.value for state in State} == {
        "UNSET",
        "CACHED",
        "QUEUED",
        "RUNNING",
        "SUCCESS",
        "FAILED",
        "CANCELLED",
    }
    assert all(state.name == state.value for state in State)  # bound to SQL as plain strings


def test_every_state_has_a_row_and_success_is_final() -> None:
    assert set(TRANSITIONS) == set(State)
    assert TRANSITIONS[S.SUCCESS] == frozenset()
    assert UNFINISHED | FINISHED | {S.UNSET} == set(State)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.UNSET, S.QUEUED),
        (S.CACHED, S.QUEUED),
        (S.QUEUED, S.RUNNING),
        (S.RUNNING, S.SUCCESS),
        (S.RUNNING, S.QUEUED),
        (S.FAILED, S.QUEUED),
        (S.CANCELLED, S.CACHED),
    ],
)
def test_allowed_moves(old: State, new: State) -> None:
    check_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.SUCCESS, S.QUEUED),
        (S.CACHED, S.RUNNING),  # a waiting task is never claimed
        (S.QUEUED, S.SUCCESS),  # nor completed without a lease
        (S.FAILED, S.RUNNING),
        (S.UNSET, S.RUNNING),
    ],
)
def test_forbidden_moves_name_both_states(old: State, new: State) -> None:
    with pytest.raises(TransitionError, match=f"from {old} to {new}"):
        check_transition(old, new)
    with pytest.raises(TransitionError):
        checked_sources(new, old)


def test_checked_sources_returns_the_sources() -> None:
    assert checked_sources(S.CANCELLED, S.CACHED, S.QUEUED) == (S.CACHED, S.QUEUED)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({}, S.UNSET),
        ({S.CACHED: 5}, S.CACHED),
        ({S.CACHED: 5, S.QUEUED: 1}, S.QUEUED),
        ({S.QUEUED: 3, S.RUNNING: 1}, S.RUNNING),
        ({S.QUEUED: 3, S.SUCCESS: 1}, S.RUNNING),  # under way between two claims
        ({S.QUEUED: 1, S.FAILED: 1}, S.RUNNING),  # FAILED only once everything finished
        ({S.SUCCESS: 4}, S.SUCCESS),
        ({S.SUCCESS: 3, S.FAILED: 1, S.CANCELLED: 2}, S.FAILED),
        ({S.SUCCESS: 3, S.CANCELLED: 2}, S.CANCELLED),
        ({S.SUCCESS: 3, S.UNSET: 2}, S.SUCCESS),
    ],
)
def test_job_state(counts: dict[State, int], expected: State) -> None:
    assert job_state(counts) is expected


def test_job_state_depends_only_on_which_states_occur() -> None:
    task_states: list[State] = [s for s in State if s is not S.UNSET]
    for size in range(len(task_states) + 1):
        for present in itertools.combinations(task_states, size):
            ones: dict[State, int] = {state: 1 for state in present}
            many: dict[State, int] = {state: 7 + index for index, state in enumerate(present)}
            assert job_state(ones) is job_state(many) is job_state({**many, S.UNSET: 0})


def test_a_job_with_a_running_task_is_running() -> None:
    """The claim relies on this to skip re-deriving jobs that already show RUNNING."""
    task_states: list[State] = [s for s in State if s is not S.UNSET]
    for size in range(len(task_states)):
        for present in itertools.combinations(task_states, size):
            counts: dict[State, int] = {s: 1 for s in present}
            assert job_state({**counts, S.RUNNING: 1}) is S.RUNNING
