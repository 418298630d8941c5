"""A run killed with SIGKILL in the middle of a transaction loses nothing and repeats nothing."""

from __future__ import annotations

import math
import multiprocessing
import os
import signal
from typing import Any

from sqlalchemy import event

from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store
from tests.engine.storetools import result_of, run_until_empty, submit


def die_while_completing(url: str) -> None:
    """Claim two tasks, then get killed between marking them done and recording outputs."""
    store = Store(url)

    def kill_on_outputs(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.startswith("INSERT INTO files"):
            os.kill(os.getpid(), signal.SIGKILL)

    event.listen(store._engine, "before_cursor_execute", kill_on_outputs)
    leases = store.claim("doomed", limit=2, lease_seconds=3600)
    store.complete([result_of(lease) for lease in leases])


def test_a_run_killed_mid_completion_is_resumed_exactly_once(store: Store, store_url: str) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A\ndummy -I A -O B", page_count=3)
    child = multiprocessing.get_context("fork").Process(
        target=die_while_completing, args=(store_url,)
    )
    child.start()
    child.join(timeout=60)
    assert child.exitcode == -signal.SIGKILL
    assert store.progress(job.id).counts == {State.RUNNING: 2, State.QUEUED: 1, State.CACHED: 3}
    assert store.expire_leases(now=math.inf) == 2  # the next run's first act
    run_until_empty(store)
    assert store.workflow_job(job.id).state is State.SUCCESS
    workspace_id = store.workflow_job(job.id).workspace_id
    registered = [r.file.file_id for r in store.pending_registrations(workspace_id, 100)]
    assert sorted(registered) == sorted(set(registered))
    assert len(registered) == 6
