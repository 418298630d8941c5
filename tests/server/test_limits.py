"""Request size limits over real HTTP: JSON and form bodies small, workspace uploads larger."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.server.conftest import ServerProcess
from tests.server.servers import running_server

MAX_REQUEST = 2048
MAX_UPLOAD = 64 * 1024
RUN = "/processor/run/ocrd-dummy"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("limits-server")
    config = f"max_request_bytes = {MAX_REQUEST}\nmax_upload_bytes = {MAX_UPLOAD}\n"
    with running_server(root, config) as started:
        yield started


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def run_request(description_bytes: int) -> dict[str, object]:
    return {
        "path_to_mets": "/nowhere/mets.xml",
        "input_file_grps": ["OCR-D-IMG"],
        "description": "x" * description_bytes,
    }


def chunked(data: bytes, size: int = 512) -> Iterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


def test_a_json_body_over_the_limit_is_413(client: httpx.Client) -> None:
    answer = client.post(RUN, json=run_request(MAX_REQUEST))

    assert answer.status_code == 413
    assert str(MAX_REQUEST) in answer.json()["detail"]


def test_a_chunked_json_body_over_the_limit_is_413(client: httpx.Client) -> None:
    body = httpx.Request("POST", "/", json=run_request(MAX_REQUEST)).read()

    answer = client.post(RUN, content=chunked(body), headers={"Content-Type": "application/json"})

    assert answer.status_code == 413
    assert str(MAX_REQUEST) in answer.json()["detail"]


def test_a_json_body_under_the_limit_reaches_the_route(client: httpx.Client) -> None:
    answer = client.post(RUN, json=run_request(MAX_REQUEST // 2))

    assert answer.status_code != 413
    assert answer.json()["detail"]


def test_a_workflow_text_over_the_limit_is_413(client: httpx.Client) -> None:
    workflow = "dummy -I OCR-D-IMG -O OUT\n" * (MAX_REQUEST // 10)

    answer = client.post("/workflow", files={"workflow": ("workflow.txt", workflow)})

    assert answer.status_code == 413
    assert "detail" in answer.json()


def test_an_upload_may_be_larger_than_a_request_body(client: httpx.Client) -> None:
    junk = b"not a zip" * (4 * MAX_REQUEST // 9)

    answer = client.post(
        "/workspace", content=junk, headers={"Content-Type": "application/vnd.ocrd+zip"}
    )

    assert answer.status_code == 400
    assert "OCRD-ZIP" in answer.json()["detail"]
