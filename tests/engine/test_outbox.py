"""The METS writer's outbox: every output once, in completion order, until registered."""

from __future__ import annotations

from ocrswarm.engine.store import Store
from tests.engine.storetools import output_of, result_of, submit


def test_outputs_wait_in_completion_order_until_registered(store: Store) -> None:
    job = submit(store, "dummy -I OCR-D-IMG -O A", page_count=3)
    workspace_id = store.workflow_job(job.id).workspace_id
    leases = store.claim("w", limit=3)
    store.complete([result_of(leases[2])])
    store.complete([result_of(leases[0]), result_of(leases[1])])
    pending = store.pending_registrations(workspace_id, 10)
    assert [r.file for r in pending] == output_of(leases[2]) + output_of(leases[0]) + output_of(
        leases[1]
    )
    assert [r.task_id for r in pending] == [leases[2].task_id, leases[0].task_id, leases[1].task_id]
    assert {(r.job_id, r.executable) for r in pending} == {
        (job.processing_job_ids[0], "ocrd-dummy")
    }
    assert [r.id for r in store.pending_registrations(workspace_id, 2)] == [
        r.id for r in pending[:2]
    ]
    store.mark_registered([pending[0].id, pending[0].id])
    store.mark_registered([])
    assert store.pending_registrations(workspace_id, 10) == pending[1:]


def test_each_workspace_has_its_own_outbox(store: Store) -> None:
    here = submit(store, "dummy -I OCR-D-IMG -O A", page_count=1, mets="/data/here/mets.xml")
    submit(store, "dummy -I OCR-D-IMG -O A", page_count=1, mets="/data/there/mets.xml")
    store.complete([result_of(lease) for lease in store.claim("w", limit=2)])
    workspace_id = store.workflow_job(here.id).workspace_id
    [registration] = store.pending_registrations(workspace_id, 10)
    assert registration.job_id == here.processing_job_ids[0]
    assert store.pending_registrations("no-such-workspace", 10) == []
