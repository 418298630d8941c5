"""POST /processor/run and the processing job: state, log, bad input, depends_on, callbacks."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ocrswarm.engine.states import State
from ocrswarm.formats.mets import Mets
from tests.server.conftest import free_port, wait_for

OCRD_STATES = {str(state) for state in State}


def run(client: httpx.Client, mets: Path, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "path_to_mets": str(mets),
        "input_file_grps": ["OCR-D-IMG"],
        "output_file_grps": ["OCR-D-DUMMY"],
    }
    body.update(fields)
    return client.post("/processor/run/ocrd-dummy", json=body)


def finished(answer: dict[str, object]) -> bool:
    return answer["state"] in ("SUCCESS", "FAILED", "CANCELLED")


def test_a_processing_job_runs_every_page_into_the_mets(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(3)
    job = run(client, mets).raise_for_status().json()
    assert job["state"] in OCRD_STATES
    assert job["processor_name"] == "ocrd-swarm-dummy"
    done = wait_for(client, f"/processor/job/{job['job_id']}", finished)
    assert done["state"] == "SUCCESS"
    files = Mets.read(mets).find_files(file_grp="OCR-D-DUMMY")
    assert sorted(file.page_id for file in files) == ["PHYS_0001", "PHYS_0002", "PHYS_0003"]
    for file in files:
        assert (mets.parent / file.href).is_file()
    log = client.get(f"/processor/log/{job['job_id']}")
    assert log.headers["content-type"].startswith("text/plain")
    assert "ocrd-swarm-dummy" in log.text
    assert "SUCCESS" in log.text


def test_page_id_selects_pages_and_stays_with_the_job(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(3)
    job = run(client, mets, page_id="PHYS_0002..PHYS_0003").raise_for_status().json()
    assert job["page_id"] == "PHYS_0002..PHYS_0003"
    done = wait_for(client, f"/processor/job/{job['job_id']}", finished)
    assert (done["state"], done["page_id"]) == ("SUCCESS", "PHYS_0002..PHYS_0003")
    files = Mets.read(mets).find_files(file_grp="OCR-D-DUMMY")
    assert [file.page_id for file in files] == ["PHYS_0002", "PHYS_0003"]
    every_page = run(client, mets, output_file_grps=["ALL"]).raise_for_status().json()
    assert "page_id" not in client.get(f"/processor/job/{every_page['job_id']}").json()
    listed = {item["job_id"]: item for item in client.get("/jobs").json()["jobs"]}
    assert listed[job["job_id"]]["page_id"] == "PHYS_0002..PHYS_0003"
    assert listed[every_page["job_id"]]["page_id"] is None


def test_workspace_id_names_a_known_workspace(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(2)
    first = run(client, mets).raise_for_status().json()
    body = {
        "workspace_id": first["workspace_id"],
        "input_file_grps": ["OCR-D-IMG"],
        "output_file_grps": ["OCR-D-OTHER"],
    }
    second = client.post("/processor/run/ocrd-dummy", json=body).raise_for_status().json()
    assert wait_for(client, f"/processor/job/{second['job_id']}", finished)["state"] == "SUCCESS"
    assert len(Mets.read(mets).find_files(file_grp="OCR-D-OTHER")) == 2


def test_depends_on_reads_the_earlier_jobs_output(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(2)
    first = run(client, mets, output_file_grps=["STEP1"]).raise_for_status().json()
    second = run(
        client,
        mets,
        input_file_grps=["STEP1"],
        output_file_grps=["STEP2"],
        depends_on=[first["job_id"]],
    )
    assert second.status_code == 200, second.text
    done = wait_for(client, f"/processor/job/{second.json()['job_id']}", finished)
    assert done["state"] == "SUCCESS"
    assert len(Mets.read(mets).find_files(file_grp="STEP2")) == 2


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"parameters": {"copy_files": "yes"}}, 400, "copy_files"),
        ({"parameters": {"no_such_parameter": 1}}, 400, "no_such_parameter"),
        ({"input_file_grps": ["NOT-THERE"]}, 422, "NOT-THERE"),
        ({"result_queue_name": "results"}, 422, "RabbitMQ"),
        ({"workspace_id": "abc"}, 422, "exactly one"),
        ({"callback_url": "ftp://example.org/x"}, 422, "callback_url"),
        ({"page_id": "PHYS_9999"}, 400, "PHYS_9999"),
        ({"depends_on": ["no-such-job"]}, 422, "no-such-job"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    client: httpx.Client,
    make_workspace: Callable[..., Path],
    change: dict[str, Any],
    status: int,
    needle: str,
) -> None:
    mets = make_workspace(1)
    response = run(client, mets, **change)
    assert response.status_code == status, response.text
    assert needle in json.dumps(response.json()["detail"])


def test_unknown_processor_is_404(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(1)
    body = {"path_to_mets": str(mets), "input_file_grps": ["OCR-D-IMG"]}
    response = client.post("/processor/run/ocrd-nonesuch", json=body)
    assert response.status_code == 404
    assert "ocrd-nonesuch" in response.json()["detail"]


def test_malformed_json_is_422_with_a_detail(client: httpx.Client) -> None:
    response = client.post(
        "/processor/run/ocrd-dummy",
        content=b'{"input_file_grps": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["detail"]


def test_missing_input_file_grps_is_422(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    response = client.post(
        "/processor/run/ocrd-dummy", json={"path_to_mets": str(make_workspace(1))}
    )
    assert response.status_code == 422
    assert "input_file_grps" in json.dumps(response.json()["detail"])


def test_paths_outside_the_data_roots_are_refused(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(1)
    elsewhere = Path(tempfile.mkdtemp())  # outside pytest's base temp, the data root
    try:
        (elsewhere / "mets.xml").write_bytes(mets.read_bytes())
        link = mets.parent / "link-out.xml"
        os.symlink(elsewhere / "mets.xml", link)
        for path in (
            "/etc/passwd",
            f"{mets.parent}/../../../../../etc/passwd",
            str(link),
            "relative/mets.xml",
        ):
            response = run(client, mets, path_to_mets=path)
            assert response.status_code == 403, (path, response.text)
            detail = response.json()["detail"]
            assert "refused" in detail or "absolute" in detail
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_unknown_job_is_404(client: httpx.Client) -> None:
    for path in ("/processor/job/nonesuch", "/processor/log/nonesuch"):
        response = client.get(path)
        assert response.status_code == 404
        assert "nonesuch" in response.json()["detail"]


def test_callback_gets_the_result_message(
    client: httpx.Client,
    make_workspace: Callable[..., Path],
    receiver: tuple[str, list[dict[str, Any]]],
) -> None:
    url, received = receiver
    mets = make_workspace(2)
    job = run(client, mets, callback_url=url).raise_for_status().json()
    wait_for(client, f"/processor/job/{job['job_id']}", finished)
    deadline = 100
    while not received and deadline:
        threading.Event().wait(0.1)
        deadline -= 1
    assert received == [
        {"job_id": job["job_id"], "state": "SUCCESS", "path_to_mets": str(mets.resolve())}
    ]


def test_an_unreachable_callback_does_not_hold_up_the_job(
    client: httpx.Client, make_workspace: Callable[..., Path]
) -> None:
    mets = make_workspace(2)
    url = f"https://127.0.0.1:{free_port()}/nobody-listens"
    job = run(client, mets, callback_url=url).raise_for_status().json()
    assert wait_for(client, f"/processor/job/{job['job_id']}", finished)["state"] == "SUCCESS"
    second = run(client, mets, output_file_grps=["AFTER"]).raise_for_status().json()
    assert wait_for(client, f"/processor/job/{second['job_id']}", finished)["state"] == "SUCCESS"
