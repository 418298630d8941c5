"""Fuzzing: schemathesis sends what our own published /openapi.json allows, and worse.

A live server on loopback answers every generated request; no answer may be a 5xx. The run
is bounded (a few examples per operation) and deterministic (derandomized), so a failure
reproduces and the test takes seconds. Each operation gets its own Hypothesis run, so one
failing operation does not hide another.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    CheckFunction,
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.server.conftest import ServerProcess

EXAMPLES_PER_OPERATION = 20
BEYOND_THE_SPEC = {
    "/job/{job_id}/cancel",
    "/job/{job_id}/retry",
    "/job/{job_id}/pages",
    "/job/{job_id}/events",
    "/jobs",
    "/workspace/{workspace_id}/files/{path}",
    "/workers",
    "/health",
    "/metrics",
}

# Our own endpoints are held to their documentation too: status codes, content types, bodies.
OWN_TAGS = {"jobs", "observe"}
STRICT: list[CheckFunction] = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]

# An OCRD-ZIP body is bytes, as schemathesis sends application/octet-stream.
schemathesis.serializer.alias("application/vnd.ocrd+zip", "application/octet-stream")


@pytest.fixture(scope="module")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server for the whole run (data inside a root it may use)."""
    root = tmp_path_factory.mktemp("fuzz")
    server = ServerProcess(root / "data", [root], workers=1)
    server.start()
    yield server
    server.stop(signal.SIGKILL)  # like the shared fixtures: a graceful stop is tested elsewhere


@pytest.fixture(scope="module")
def published_schema(live_server: ServerProcess) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{live_server.url}/openapi.json")


def fuzz(operation: schemathesis.APIOperation, base_url: str) -> None:
    """Raise if any bounded, derandomized example of `operation` gets a 5xx (or, for our
    own endpoints, an answer its documentation does not describe)."""
    checks = STRICT

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, checks=checks, timeout=30)

    run()


def test_no_request_makes_the_server_fail(
    published_schema: schemathesis.BaseSchema, live_server: ServerProcess
) -> None:
    failures = []
    fuzzed = 0
    for result in published_schema.get_all_operations():
        operation = result.ok()
        try:
            fuzz(operation, live_server.url)
        except (Exception, BaseExceptionGroup) as error:  # schemathesis groups its failures
            failures.append(f"{operation.label}: {error}")
        fuzzed += 1
    assert fuzzed > len(BEYOND_THE_SPEC)
    assert not failures, "\n\n".join(failures)


def test_the_published_document_has_every_endpoint(
    published_schema: schemathesis.BaseSchema,
) -> None:
    assert set(published_schema.raw_schema["paths"]) >= BEYOND_THE_SPEC


NOT_FOUND_OPERATIONS = [
    ("get", "/processor/info/{executable}"),
    ("post", "/processor/run/{executable}"),
    ("get", "/processor/job/{job_id}"),
    ("get", "/processor/log/{job_id}"),
    ("get", "/workflow/{workflow_id}"),
    ("put", "/workflow/{workflow_id}"),
    ("get", "/workflow/job/{job_id}"),
    ("get", "/workflow/job-simple/{job_id}"),
]


@pytest.mark.parametrize(("method", "path"), NOT_FOUND_OPERATIONS)
def test_the_published_document_declares_a_json_404(
    published_schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    answers = published_schema.raw_schema["paths"][path][method]["responses"]
    assert set(answers["404"]["content"]) == {"application/json"}
    assert "detail" in answers["404"]["content"]["application/json"]["schema"]["properties"]


@pytest.mark.parametrize("path", ["/workflow", "/workflow/run"])
def test_the_published_422_allows_a_message(
    published_schema: schemathesis.BaseSchema, path: str
) -> None:
    schema = published_schema.raw_schema["paths"][path]["post"]["responses"]["422"]["content"]
    detail = schema["application/json"]["schema"]["properties"]["detail"]
    assert {"type": "string"} in detail["anyOf"]
