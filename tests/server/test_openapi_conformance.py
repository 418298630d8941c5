"""Every response of a realistic session, checked against OCR-D's OpenAPI document.

One scenario touches every section (discovery, processing, workflow, workspace, and the
errors clients see); each answer is recorded as it arrives and validated afterwards with
openapi-core. An answer whose path or status the spec does not declare (our endpoints
beyond the spec, 400/422 where the spec is silent) must still carry a JSON `detail` when it
is an error. The spec is ../shared/spec/openapi.yml; a copy ships beside this file so the
test also runs without ../shared, and the test fails if the copy drifts from the original.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from openapi_core import OpenAPI
from openapi_core.datatypes import RequestParameters
from openapi_core.templating.paths.exceptions import PathNotFound
from openapi_core.templating.responses.exceptions import ResponseNotFound
from werkzeug.datastructures import Headers, ImmutableMultiDict

from ocrswarm.formats.ocrdzip import pack_workspace
from tests.server.conftest import ServerProcess, wait_for

SPEC_COPY = Path(__file__).with_name("ocrd-web-api.openapi.yml")
OCRD_ZIP = "application/vnd.ocrd+zip"
# Paths the spec does not have: our endpoints beyond it, and OCR-D core's job-simple.
OUR_PATHS = ("/job/", "/jobs", "/health", "/metrics", "/workflow/job-simple/")
WORKFLOW = (
    "dummy -I OCR-D-IMG -O OCR-D-DUMMY1\n"
    "dummy -I OCR-D-DUMMY1 -O OCR-D-DUMMY2\n"
    "dummy -I OCR-D-DUMMY2 -O OCR-D-DUMMY3\n"
)


@dataclass(frozen=True)
class SpecRequest:
    """An httpx request as openapi-core reads requests."""

    request: httpx.Request

    @property
    def host_url(self) -> str:
        return f"{self.request.url.scheme}://{self.request.url.netloc.decode()}"

    @property
    def path(self) -> str:
        return self.request.url.path

    @property
    def method(self) -> str:
        return self.request.method.lower()

    @property
    def parameters(self) -> RequestParameters:
        return RequestParameters(
            query=ImmutableMultiDict(self.request.url.params.multi_items()),
            header=Headers(dict(self.request.headers)),
        )

    @property
    def body(self) -> bytes | None:
        return self.request.read() or None

    @property
    def content_type(self) -> str:
        return self.request.headers.get("content-type", "")


@dataclass(frozen=True)
class SpecResponse:
    """An httpx response as openapi-core reads responses."""

    response: httpx.Response

    @property
    def status_code(self) -> int:
        return self.response.status_code

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "")

    @property
    def headers(self) -> Headers:
        return Headers(dict(self.response.headers))

    @property
    def data(self) -> bytes:
        return self.response.content


@pytest.fixture(scope="module")
def ocrd_spec(request: pytest.FixtureRequest) -> dict[str, Any]:
    """OCR-D's OpenAPI document: the shared original when present, else the copy."""
    copy = SPEC_COPY.read_text(encoding="utf-8")
    try:
        shared: Path = request.getfixturevalue("shared_spec") / "openapi.yml"
    except pytest.skip.Exception:
        shared = SPEC_COPY
    assert shared.read_text(encoding="utf-8") == copy, f"{SPEC_COPY} differs from {shared}"
    spec: dict[str, Any] = yaml.safe_load(copy)
    return without_empty_content(spec)


def without_empty_content(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with each `content: {}` of a response left out.

    The spec writes `content: {}` for some 404 and 410 answers, which a strict validator
    reads as "no body at all"; but OCR-D's client reads `detail` from every error body, and
    the issue asks for it, so such an answer is checked only for its status (and its
    `detail`, like every error).
    """
    for operations in spec["paths"].values():
        for operation in operations.values():
            for response in operation.get("responses", {}).values():
                if response.get("content") == {}:
                    del response["content"]
    return spec


@pytest.fixture
def recorded(server: ServerProcess) -> Iterator[tuple[httpx.Client, list[httpx.Response]]]:
    """A client of the live server and every response it has received."""
    answers: list[httpx.Response] = []

    def record(response: httpx.Response) -> None:
        response.read()
        answers.append(response)

    with httpx.Client(
        base_url=server.url, timeout=30.0, event_hooks={"response": [record]}
    ) as client:
        yield client, answers


def finished(answer: dict[str, object]) -> bool:
    return answer["state"] in ("SUCCESS", "FAILED", "CANCELLED")


def test_discovery_processing_and_workflow_answers_conform(
    ocrd_spec: dict[str, Any],
    server: ServerProcess,
    recorded: tuple[httpx.Client, list[httpx.Response]],
    make_workspace: Callable[..., Path],
) -> None:
    client, answers = recorded
    discover(client)
    job_id = process(client, make_workspace(2, name="processing"))
    run_workflow(client, make_workspace(2, name="workflow"))
    make_mistakes(client, make_workspace(1, name="mistakes"))
    beyond_the_spec(client, job_id)
    assert_conform(ocrd_spec, server, answers)


def test_workspace_answers_conform(
    ocrd_spec: dict[str, Any],
    server: ServerProcess,
    recorded: tuple[httpx.Client, list[httpx.Response]],
    make_workspace: Callable[..., Path],
    tmp_path: Path,
) -> None:
    client, answers = recorded
    move_workspaces(client, make_workspace(1, name="bagged"), tmp_path)
    assert_conform(ocrd_spec, server, answers)


def assert_conform(
    ocrd_spec: dict[str, Any], server: ServerProcess, answers: list[httpx.Response]
) -> None:
    """Every answer is what the spec declares; where it declares nothing (our own paths,
    an error status it does not list) an error still has its JSON `detail`."""
    spec = OpenAPI.from_dict({**ocrd_spec, "servers": [{"url": server.url}]})
    problems = []
    for answer in answers:
        where = f"{answer.request.method} {answer.request.url.path} -> {answer.status_code}"
        if answer.status_code >= 500:
            problems.append(f"{where}: {answer.text}")
        if answer.status_code >= 400 and not has_detail(answer):
            problems.append(f"{where}: no JSON detail")
        try:
            spec.validate_response(SpecRequest(answer.request), SpecResponse(answer))
        except PathNotFound:
            if not answer.request.url.path.startswith(OUR_PATHS):
                problems.append(f"{where}: a path of the spec was not matched")
        except ResponseNotFound:
            if answer.status_code < 400:
                problems.append(f"{where}: the spec declares no such success status")
        except Exception as error:
            problems.append(f"{where}: {error} {error.__cause__ or ''}")
    assert not problems, "\n".join(problems)


def has_detail(answer: httpx.Response) -> bool:
    try:
        return "detail" in answer.json()
    except json.JSONDecodeError:
        return False


def discover(client: httpx.Client) -> None:
    assert client.get("/discovery").status_code == 200
    processors = client.get("/processor").json()
    assert "ocrd-dummy" in processors
    assert client.get("/processor/info/ocrd-dummy").status_code == 200


def process(client: httpx.Client, mets: Path) -> str:
    body = {
        "path_to_mets": str(mets),
        "input_file_grps": ["OCR-D-IMG"],
        "output_file_grps": ["OCR-D-DUMMY"],
        "page_id": "PHYS_0001,PHYS_0002",
        "parameters": {},
        "description": "conformance",
    }
    job = client.post("/processor/run/ocrd-dummy", json=body).raise_for_status().json()
    done = wait_for(client, f"/processor/job/{job['job_id']}", finished)
    assert done["state"] == "SUCCESS"
    assert client.get(f"/processor/log/{job['job_id']}").status_code == 200
    following = client.post(
        "/processor/run/ocrd-dummy",
        json={
            "path_to_mets": str(mets),
            "input_file_grps": ["OCR-D-DUMMY"],
            "output_file_grps": ["OCR-D-DUMMY-NEXT"],
            "depends_on": [job["job_id"]],
        },
    ).raise_for_status()
    wait_for(client, f"/processor/job/{following.json()['job_id']}", finished)
    job_id: str = job["job_id"]
    return job_id


def run_workflow(client: httpx.Client, mets: Path) -> None:
    files = {"workflow": ("workflow.txt", WORKFLOW.encode(), "text/plain")}
    workflow_id = client.post("/workflow", files=files).raise_for_status().json()["workflow_id"]
    assert client.get(f"/workflow/{workflow_id}").status_code == 200
    assert client.put(f"/workflow/{workflow_id}", files=files).status_code == 200
    job = (
        client.post(
            "/workflow/run",
            params={"mets_path": str(mets), "workflow_id": workflow_id, "page_wise": "true"},
        )
        .raise_for_status()
        .json()
    )
    done = wait_for(client, f"/workflow/job-simple/{job['job_id']}", finished)
    assert done["state"] == "SUCCESS"
    assert client.get(f"/workflow/job/{job['job_id']}").status_code == 200
    inline = client.post("/workflow/run", params={"mets_path": str(mets)}, files=files)
    done = wait_for(client, f"/workflow/job-simple/{inline.json()['job_id']}", finished)
    assert done["state"] == "SUCCESS"


def move_workspaces(client: httpx.Client, mets: Path, tmp_path: Path) -> None:
    bag = pack_workspace(mets, tmp_path / "upload.ocrd.zip").read_bytes()
    created = client.post("/workspace", content=bag, headers={"content-type": OCRD_ZIP})
    assert created.status_code == 201, created.text
    workspace_id = created.json()["@id"].rstrip("/").rsplit("/", 1)[-1]
    assert client.get("/workspace").status_code == 200
    json_view = client.get(f"/workspace/{workspace_id}", headers={"accept": "application/json"})
    assert json_view.status_code == 200
    zip_view = client.get(f"/workspace/{workspace_id}", headers={"accept": OCRD_ZIP})
    assert zip_view.headers["content-type"].startswith(OCRD_ZIP)
    replaced = client.put(
        f"/workspace/{workspace_id}", content=bag, headers={"content-type": OCRD_ZIP}
    )
    assert replaced.status_code == 200, replaced.text
    assert client.delete(f"/workspace/{workspace_id}").status_code == 200
    assert client.get(f"/workspace/{workspace_id}").status_code == 410
    assert client.delete(f"/workspace/{workspace_id}").status_code == 410
    corrupt = client.post(
        "/workspace", content=b"PK\x03\x04 not a zip", headers={"content-type": OCRD_ZIP}
    )
    assert corrupt.status_code == 400
    assert client.get("/workspace/no-such-workspace").status_code == 404


def make_mistakes(client: httpx.Client, mets: Path) -> None:
    assert client.get("/processor/info/ocrd-no-such-tool").status_code == 404
    assert client.get("/processor/job/no-such-job").status_code == 404
    assert client.get("/processor/log/no-such-job").status_code == 404
    assert client.get("/workflow/job/no-such-job").status_code == 404
    assert client.get("/workflow/no-such-workflow").status_code == 404
    malformed = client.post(
        "/processor/run/ocrd-dummy",
        content=b"{not json",
        headers={"content-type": "application/json"},
    )
    assert malformed.status_code == 422
    unknown = client.post(
        "/processor/run/ocrd-no-such-tool",
        json={"path_to_mets": str(mets), "input_file_grps": ["OCR-D-IMG"]},
    )
    assert unknown.status_code == 404
    bad_parameter = client.post(
        "/processor/run/ocrd-dummy",
        json={
            "path_to_mets": str(mets),
            "input_file_grps": ["OCR-D-IMG"],
            "output_file_grps": ["OUT"],
            "parameters": {"no_such_parameter": 1},
        },
    )
    assert bad_parameter.status_code == 400
    assert "no_such_parameter" in bad_parameter.json()["detail"]
    broken = {"workflow": ("workflow.txt", b"dummy -I OCR-D-IMG -O\n", "text/plain")}
    assert client.post("/workflow", files=broken).status_code == 422
    fine = {"workflow": ("workflow.txt", WORKFLOW.encode(), "text/plain")}
    outside = client.post("/workflow/run", params={"mets_path": "/etc/passwd"}, files=fine)
    assert outside.status_code == 403


def beyond_the_spec(client: httpx.Client, job_id: str) -> None:
    """Our own endpoints answer on the live server too (their shapes: test_fuzz.py)."""
    assert client.get(f"/job/{job_id}/pages").json()["total"] == 2
    events = client.get(f"/job/{job_id}/events")
    assert events.headers["content-type"].startswith("text/event-stream")
    assert events.text.rstrip().endswith('"state":"SUCCESS"}')
    assert job_id in {job["job_id"] for job in client.get("/jobs").json()["jobs"]}
    assert client.post(f"/job/{job_id}/cancel").json()["tasks_changed"] == 0
    assert client.post(f"/job/{job_id}/retry").json()["tasks_changed"] == 0
    assert "ocrswarm_pages_done" in client.get("/metrics").text
    assert client.get("/health").json()["status"] == "ok"
