"""Workflows: stored texts, POST /workflow/run, the workflow job and OCR-D's job-simple."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from ocrswarm.formats.mets import Mets
from tests.server.conftest import wait_for

THREE_DUMMIES = (
    "dummy -I OCR-D-IMG -O OCR-D-DUMMY1\n"
    "dummy -I OCR-D-DUMMY1 -O OCR-D-DUMMY2\n"
    "dummy -I OCR-D-DUMMY2 -O OCR-D-DUMMY3\n"
)


def simple_done(answer: dict[str, object]) -> bool:
    return answer["state"] in ("SUCCESS", "FAILED")


def run_workflow(
    client: httpx.Client, mets: Path, text: str = THREE_DUMMIES, **query: str
) -> httpx.Response:
    return client.post(
        "/workflow/run",
        params={"mets_path": str(mets), "page_wise": "True", **query},
        files={"workflow": ("workflow.txt", text.encode())},
    )


def test_a_workflow_runs_every_step_on_every_page(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(4)
    job = run_workflow(client, mets).raise_for_status().json()
    assert job["page_wise"] is True
    assert list(job["processing_job_ids"]) == ["OCR-D-DUMMY1", "OCR-D-DUMMY2", "OCR-D-DUMMY3"]
    simple = wait_for(client, f"/workflow/job-simple/{job['job_id']}", simple_done)
    assert simple == {"state": "SUCCESS"}
    status = client.get(f"/workflow/job/{job['job_id']}").raise_for_status().json()
    assert status["state"] == "SUCCESS"
    assert status["failed_tasks"] == []
    for step in status["processors"].values():
        assert step["counts"] == {"SUCCESS": 4}
    document = Mets.read(mets)
    ids = [file.id for file in document.files]
    assert len(ids) == len(set(ids))
    for grp in ("OCR-D-DUMMY1", "OCR-D-DUMMY2", "OCR-D-DUMMY3"):
        pages = Counter(file.page_id for file in document.find_files(file_grp=grp))
        assert pages == dict.fromkeys(document.page_ids, 1)


def test_the_workflow_job_keeps_its_page_id(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(3)
    job = run_workflow(client, mets, page_id="PHYS_0001,PHYS_0003").raise_for_status().json()
    assert job["page_id"] == "PHYS_0001,PHYS_0003"
    wait_for(client, f"/workflow/job-simple/{job['job_id']}", simple_done)
    status = client.get(f"/workflow/job/{job['job_id']}").raise_for_status().json()
    assert (status["state"], status["page_id"]) == ("SUCCESS", "PHYS_0001,PHYS_0003")
    step_job = status["processing_job_ids"]["OCR-D-DUMMY1"]
    assert client.get(f"/processor/job/{step_job}").json()["page_id"] == "PHYS_0001,PHYS_0003"
    every_page = run_workflow(client, mets, "dummy -I OCR-D-IMG -O ALL\n").json()
    assert client.get(f"/workflow/job/{every_page['job_id']}").json()["page_id"] == ""


def test_a_stored_workflow_runs_by_its_id(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    first = "dummy -I OCR-D-IMG -O ONE\n"
    posted = client.post("/workflow", files={"workflow": ("w.txt", first.encode())})
    workflow_id = posted.raise_for_status().json()["workflow_id"]
    assert client.get(f"/workflow/{workflow_id}").text == first
    second = "dummy -I OCR-D-IMG -O TWO\n"
    replaced = client.put(
        f"/workflow/{workflow_id}", files={"workflow": ("w.txt", second.encode())}
    )
    assert replaced.raise_for_status().json() == workflow_id
    assert client.get(f"/workflow/{workflow_id}").text == second
    mets = make_workspace(2)
    job = client.post(
        "/workflow/run", params={"mets_path": str(mets), "workflow_id": workflow_id}
    ).raise_for_status()
    simple = wait_for(client, f"/workflow/job-simple/{job.json()['job_id']}", simple_done)
    assert simple["state"] == "SUCCESS"
    assert len(Mets.read(mets).find_files(file_grp="TWO")) == 2


def test_a_syntax_error_names_its_line(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    text = "dummy -I OCR-D-IMG -O A\ndummy -I A -O B --bogus\n"
    for response in (
        run_workflow(client, make_workspace(1), text),
        client.post("/workflow", files={"workflow": ("w.txt", text.encode())}),
    ):
        assert response.status_code == 422
        assert "line 2" in response.json()["detail"]


def test_a_missing_input_file_grp_is_refused(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    response = run_workflow(client, make_workspace(1), "dummy -I NOT-HERE -O OUT\n")
    assert response.status_code == 422
    assert "NOT-HERE" in response.json()["detail"]


def test_a_failing_page_fails_the_job_and_is_reported(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    text = """test-fail -I OCR-D-IMG -O BROKEN -P pages '["PHYS_0002"]'\n"""
    job = run_workflow(client, make_workspace(3), text).raise_for_status().json()
    simple = wait_for(client, f"/workflow/job-simple/{job['job_id']}", simple_done, timeout=90)
    assert simple["state"] == "FAILED"
    status = client.get(f"/workflow/job/{job['job_id']}").raise_for_status().json()
    assert [task["page_id"] for task in status["failed_tasks"]] == ["PHYS_0002"]
    assert "PHYS_0002" in status["failed_tasks"][0]["error"]


def test_unknown_workflow_things_are_404(client: httpx.Client) -> None:
    for path in ("/workflow/job/nonesuch", "/workflow/job-simple/nonesuch", "/workflow/nonesuch"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert response.json()["detail"]
