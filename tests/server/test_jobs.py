"""Job control beyond the spec: cancel, retry, per-page status, listing, live progress.

Most tests run the routes in an app of their own over a real store, the test playing the
workers (claim, complete, fail), so every state is reached on purpose, without timing.
The last ones do the same over HTTP on the live server with its real workers.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from ocrswarm.engine.states import FINISHED, State
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workflow import parse_workflow
from ocrswarm.formats.mets import Mets
from ocrswarm.server.auth import Role, token_digest
from ocrswarm.server.errors import install_error_handlers
from ocrswarm.server.routes import jobs
from ocrswarm.server.settings import ServerSettings, TokenEntry
from tests.engine.conftest import FakeClock
from tests.engine.storetools import pages, result_of, run_until_empty, submit
from tests.server.conftest import ServerProcess, wait_for


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(tmp_path: Path, clock: FakeClock) -> Iterator[Store]:
    with Store(sqlite_url(tmp_path / "state.sqlite"), clock=clock) as opened:
        opened.migrate()
        yield opened


class FakeService:
    """The engine service as the routes see it: a finished job shows its final state only
    once its outputs are in the METS, which here is whenever the test says (`flushed`)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.flushed = True

    def _shown(self, state: State) -> State:
        return state if self.flushed or state not in FINISHED else State.RUNNING

    def settled_states(
        self, job_ids: Sequence[str] = (), workflow_job_ids: Sequence[str] = ()
    ) -> dict[str, State]:
        statuses = self.store.job_statuses(job_ids, workflow_job_ids)
        return {job_id: self._shown(status.state) for job_id, status in statuses.items()}

    def job_state(self, job_id: str) -> State:
        return self._shown(self.store.job(job_id).state)

    def workflow_job_state(self, workflow_job_id: str) -> State:
        return self._shown(self.store.workflow_job(workflow_job_id).state)


@pytest.fixture
def service(store: Store) -> FakeService:
    return FakeService(store)


def app_over(service: FakeService, settings: ServerSettings) -> FastAPI:
    app = FastAPI()
    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(jobs.router)
    app.state.service = service
    return app


@pytest.fixture
def client(service: FakeService, tmp_path: Path) -> Iterator[TestClient]:
    with TestClient(app_over(service, ServerSettings(data_dir=tmp_path))) as opened:
        yield opened


def fail_one(store: Store) -> str:
    """Claim one ready task and fail it for good; its page id."""
    (lease,) = store.claim("w", limit=1)
    store.fail(lease.task_id, lease.token, "boom on purpose", retry=False)
    return lease.page_id


def test_cancel_a_workflow_job_cancels_its_waiting_pages(store: Store, client: TestClient) -> None:
    workflow = submit(store, page_count=4)
    answer = client.post(f"/job/{workflow.id}/cancel")
    assert answer.status_code == 200
    body = answer.json()
    assert body == {"job_id": workflow.id, "state": "CANCELLED", "tasks_changed": 12}
    assert store.workflow_job(workflow.id).state == "CANCELLED"
    assert store.claim("w", limit=10) == []


def test_cancel_a_processing_job_keeps_what_already_succeeded(
    store: Store, client: TestClient
) -> None:
    workflow = submit(store, page_count=2)
    first = workflow.processing_job_ids[0]
    (lease,) = store.claim("w", limit=1)
    store.complete([result_of(lease)])
    body = client.post(f"/job/{first}/cancel").json()
    assert body["tasks_changed"] == 1 + 2  # the other page, and its later steps
    states = {task.page_id: task.state for task in store.page_tasks(first)}
    assert states == {lease.page_id: "SUCCESS", "P0002": "CANCELLED"}


def test_retry_sends_failed_pages_back_to_the_queue(store: Store, client: TestClient) -> None:
    (step,) = parse_workflow("dummy -I OCR-D-IMG -O OUT")
    job = store.submit_processing_job(
        store.add_workspace(Path("/data/ws/mets.xml")), step, pages(3)
    )
    failed_page = fail_one(store)
    run_until_empty(store)
    assert store.job(job.id).state == "FAILED"
    body = client.post(f"/job/{job.id}/retry").json()
    assert body == {"job_id": job.id, "state": "RUNNING", "tasks_changed": 1}
    (lease,) = store.claim("w", limit=5)
    assert lease.page_id == failed_page


def test_unknown_job_is_a_404_with_detail(client: TestClient) -> None:
    for method, path in [
        ("post", "/job/nope/cancel"),
        ("post", "/job/nope/retry"),
        ("get", "/job/nope/pages"),
        ("get", "/job/nope/events"),
    ]:
        answer = client.request(method, path)
        assert answer.status_code == 404, path
        assert "nope" in answer.json()["detail"]


def test_pages_show_each_page_task_with_step_processor_and_error(
    store: Store, client: TestClient
) -> None:
    workflow = submit(store, page_count=2)
    failed_page = fail_one(store)
    body = client.get(f"/job/{workflow.id}/pages").json()
    assert body["total"] == 6
    rows = {(row["page_id"], row["step"]): row for row in body["pages"]}
    assert rows[(failed_page, 0)]["state"] == "FAILED"
    assert rows[(failed_page, 0)]["error"] == "boom on purpose"
    assert rows[(failed_page, 0)]["attempts"] == 1
    assert rows[(failed_page, 1)]["state"] == "CANCELLED"
    assert {row["processor"] for row in body["pages"]} == {workflow.steps[0].executable}
    assert [row["job_id"] for row in body["pages"] if row["page_id"] == failed_page] == list(
        workflow.processing_job_ids
    )


def test_pages_filter_by_state_and_page(store: Store, client: TestClient) -> None:
    workflow = submit(store, page_count=5)
    queued = client.get(f"/job/{workflow.id}/pages", params={"state": "QUEUED"}).json()
    assert queued["total"] == 5
    assert {row["step"] for row in queued["pages"]} == {0}
    window = client.get(f"/job/{workflow.id}/pages", params={"limit": 4, "offset": 12}).json()
    assert window["total"] == 15
    assert [(row["page_id"], row["step"]) for row in window["pages"]] == [
        ("P0005", 0),
        ("P0005", 1),
        ("P0005", 2),
    ]


def test_jobs_list_newest_first_with_filters_and_paging(
    store: Store, clock: FakeClock, client: TestClient
) -> None:
    older = submit(store, page_count=1)
    clock.advance(10)
    newer = submit(store, page_count=1, mets="/data/other/mets.xml")
    listing = client.get("/jobs", params={"kind": "workflow"}).json()
    assert [job["job_id"] for job in listing["jobs"]] == [newer.id, older.id]
    assert listing["total"] == 2
    assert listing["next_offset"] is None
    one = client.get("/jobs", params={"kind": "workflow", "limit": 1}).json()
    assert [job["job_id"] for job in one["jobs"]] == [newer.id]
    assert one["next_offset"] == 1
    mine = client.get("/jobs", params={"workspace_id": older.workspace_id}).json()
    assert {job["workspace_id"] for job in mine["jobs"]} == {older.workspace_id}
    assert mine["total"] == 1 + 3  # the workflow job and its three steps
    processing = client.get("/jobs", params={"kind": "processing"}).json()
    assert {job["workflow_job_id"] for job in processing["jobs"]} == {older.id, newer.id}


def test_jobs_filter_by_state_and_processor(store: Store, client: TestClient) -> None:
    cancelled = submit(store, page_count=1)
    store.cancel(cancelled.id)
    running = submit(store, page_count=1, mets="/data/other/mets.xml")
    by_state = client.get("/jobs", params={"state": "CANCELLED", "kind": "workflow"}).json()
    assert [job["job_id"] for job in by_state["jobs"]] == [cancelled.id]
    alias = client.get("/jobs", params={"processor": "ocrd-dummy", "kind": "workflow"}).json()
    assert {job["job_id"] for job in alias["jobs"]} == {cancelled.id, running.id}
    assert client.get("/jobs", params={"processor": "ocrd-nothing"}).json()["total"] == 0


def test_jobs_refuses_bad_filters(client: TestClient) -> None:
    assert client.get("/jobs", params={"state": "DONE"}).status_code == 422
    assert client.get("/jobs", params={"kind": "batch"}).status_code == 422
    assert client.get("/jobs", params={"limit": 0}).status_code == 422


def read_events(client: TestClient, job_id: str) -> list[tuple[str, dict[str, object]]]:
    events = []
    with client.stream("GET", f"/job/{job_id}/events") as answer:
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/event-stream")
        name = ""
        for line in answer.iter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_events_follow_a_job_to_its_end(
    store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "EVENT_POLL_SECONDS", 0.01)
    workflow = submit(store, page_count=3)
    worker = threading.Thread(target=run_until_empty, args=(store,), kwargs={"batch": 1})
    worker.start()
    events = read_events(client, workflow.id)
    worker.join()
    names = [name for name, _ in events]
    assert names[0] == "progress"
    assert names[-1] == "end"
    assert set(names[1:-1]) <= {"progress"}
    assert events[-1][1] == {"job_id": workflow.id, "state": "SUCCESS"}
    last_progress = events[-2][1]
    assert last_progress["pages_done"] == 3
    assert last_progress["counts"] == {
        "CACHED": 0,
        "QUEUED": 0,
        "RUNNING": 0,
        "SUCCESS": 9,
        "FAILED": 0,
        "CANCELLED": 0,
    }
    done = [data["pages_done"] for name, data in events if name == "progress"]
    assert done == sorted(done)


def test_events_of_a_finished_job_end_at_once(store: Store, client: TestClient) -> None:
    workflow = submit(store, page_count=1)
    store.cancel(workflow.id)
    events = read_events(client, workflow.id)
    assert [name for name, _ in events] == ["progress", "end"]
    assert events[-1][1]["state"] == "CANCELLED"


def test_events_send_heartbeats_while_nothing_changes(
    store: Store, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "EVENT_POLL_SECONDS", 0.01)
    monkeypatch.setattr(jobs, "HEARTBEAT_SECONDS", 0.0)
    workflow = submit(store, page_count=1)
    with client.stream("GET", f"/job/{workflow.id}/events") as answer:
        lines = answer.iter_lines()
        seen = [next(lines) for _ in range(5)]
    assert ": heartbeat" in seen


def test_events_end_only_once_the_outputs_are_in_the_mets(
    store: Store, service: FakeService, client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "EVENT_POLL_SECONDS", 0.01)
    workflow = submit(store, page_count=2)
    run_until_empty(store)
    service.flushed = False
    states = []
    with client.stream("GET", f"/job/{workflow.id}/events") as answer:
        for line in answer.iter_lines():
            if line.startswith("data: "):
                states.append(json.loads(line.removeprefix("data: "))["state"])
                service.flushed = True
    assert states == ["RUNNING", "SUCCESS", "SUCCESS"]  # progress, progress, end


def test_listing_and_control_show_the_settled_state(
    store: Store, service: FakeService, client: TestClient
) -> None:
    workflow = submit(store, page_count=1)
    service.flushed = False
    assert client.post(f"/job/{workflow.id}/cancel").json()["state"] == "RUNNING"
    listed = client.get("/jobs", params={"kind": "workflow"}).json()["jobs"]
    assert [job["state"] for job in listed] == ["RUNNING"]
    service.flushed = True
    listed = client.get("/jobs", params={"kind": "workflow"}).json()["jobs"]
    assert [job["state"] for job in listed] == ["CANCELLED"]


def test_reading_needs_a_reader_token_and_control_a_submitter(
    store: Store, service: FakeService, tmp_path: Path
) -> None:
    tokens = (
        TokenEntry("watcher", token_digest("reader-token"), Role.READER),
        TokenEntry("ci", token_digest("submitter-token"), Role.SUBMITTER),
    )
    workflow = submit(store, page_count=1)
    settings = ServerSettings(data_dir=tmp_path, tokens=tokens)
    reader = {"Authorization": "Bearer reader-token"}
    submitter = {"Authorization": "Bearer submitter-token"}
    with TestClient(app_over(service, settings)) as client:
        assert client.get("/jobs").status_code == 401
        assert client.get("/jobs", headers=reader).status_code == 200
        assert client.get(f"/job/{workflow.id}/pages", headers=reader).status_code == 200
        assert client.post(f"/job/{workflow.id}/cancel", headers=reader).status_code == 403
        assert client.post(f"/job/{workflow.id}/retry", headers=reader).status_code == 403
        assert client.post(f"/job/{workflow.id}/cancel", headers=submitter).status_code == 200


@pytest.fixture
def live(server: ServerProcess) -> Iterator[httpx.Client]:
    """A client of the live server (`client` here is the in-process app's)."""
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def finished(answer: dict[str, object]) -> bool:
    return answer["state"] in ("SUCCESS", "FAILED", "CANCELLED")


def test_a_failed_page_runs_again_after_the_fix_on_the_live_server(
    live: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(3)
    body = {
        "path_to_mets": str(mets),
        "input_file_grps": ["OCR-D-IMG"],
        "output_file_grps": ["OCR-D-FIXED"],
        "parameters": {"pages": ["PHYS_0002"], "unless_exists": "fixed"},
    }
    job_id = (
        live.post("/processor/run/ocrd-test-fail", json=body).raise_for_status().json()["job_id"]
    )
    assert wait_for(live, f"/processor/job/{job_id}", finished)["state"] == "FAILED"
    failed = live.get(f"/job/{job_id}/pages", params={"state": "FAILED"}).json()["pages"]
    assert [(page["page_id"], page["attempts"]) for page in failed] == [("PHYS_0002", 3)]
    assert "PHYS_0002" in failed[0]["error"]
    (mets.parent / "fixed").touch()
    assert live.post(f"/job/{job_id}/retry").json()["tasks_changed"] == 1
    assert wait_for(live, f"/processor/job/{job_id}", finished)["state"] == "SUCCESS"
    files = Mets.read(mets).find_files(file_grp="OCR-D-FIXED")
    assert sorted(file.page_id for file in files) == ["PHYS_0001", "PHYS_0002", "PHYS_0003"]


def test_cancel_stops_a_workflow_on_the_live_server(
    live: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(8)
    slow = "test-sleep -I OCR-D-IMG -O SLOW -P seconds 1\ndummy -I SLOW -O AFTER\n"
    files = {"workflow": ("workflow.txt", slow.encode(), "text/plain")}
    run = live.post("/workflow/run", params={"mets_path": str(mets)}, files=files)
    job_id = run.raise_for_status().json()["job_id"]
    cancelled = live.post(f"/job/{job_id}/cancel").json()
    assert cancelled["tasks_changed"] > 0
    events = live.get(f"/job/{job_id}/events").text
    assert events.rstrip().endswith('"state":"CANCELLED"}')
    pages = live.get(f"/job/{job_id}/pages").json()["pages"]
    assert {page["state"] for page in pages} <= {"SUCCESS", "CANCELLED"}
    done = {page["page_id"] for page in pages if page["step"] == 1 and page["state"] == "SUCCESS"}
    registered = {file.page_id for file in Mets.read(mets).find_files(file_grp="AFTER")}
    assert registered == done
