"""GET and PUT /workspace/{id}/files/{path}: one file of a workspace, for remote workers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from ocrswarm.engine.records import TaskLease, TaskResult
from ocrswarm.engine.transfer import LEASE_HEADER
from ocrswarm.server.auth import Role
from tests.server.fileserver import MAX_FILE_BYTES, FileServer, file_server
from tests.server.servers import bearer


@pytest.fixture
def served(tmp_path: Path) -> Iterator[FileServer]:
    with file_server(tmp_path) as started:
        yield started


@pytest.fixture
def http(served: FileServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.url, timeout=30) as client:
        yield client


def url(served: FileServer, path: str, workspace_id: str | None = None) -> str:
    return f"/workspace/{workspace_id or served.workspace_id}/files/{path}"


def image_href(served: FileServer) -> str:
    return served.workspace.mets.find_files(file_grp="OCR-D-IMG")[0].href


def put(
    http: httpx.Client, served: FileServer, path: str, body: bytes, lease: TaskLease | str
) -> httpx.Response:
    token = lease if isinstance(lease, str) else lease.token
    return http.put(
        url(served, path), content=body, headers={**bearer(Role.WORKER), LEASE_HEADER: token}
    )


def test_a_reader_downloads_a_file_and_revalidates_it(
    served: FileServer, http: httpx.Client
) -> None:
    href = image_href(served)

    answer = http.get(url(served, href), headers=bearer(Role.READER))
    again = http.get(
        url(served, href), headers={**bearer(Role.READER), "If-None-Match": answer.headers["etag"]}
    )

    assert answer.status_code == 200
    assert answer.content == (served.workspace.directory / href).read_bytes()
    assert answer.headers["content-type"] == "image/png"
    assert again.status_code == 304
    assert again.content == b""


def test_a_replaced_file_has_a_new_etag(served: FileServer, http: httpx.Client) -> None:
    href = image_href(served)
    first = http.get(url(served, href), headers=bearer(Role.READER)).headers["etag"]
    path = served.workspace.directory / href
    replacement = path.with_name("replacement.png")
    replacement.write_bytes(b"other bytes")
    os.replace(replacement, path)

    answer = http.get(url(served, href), headers={**bearer(Role.READER), "If-None-Match": first})

    assert answer.status_code == 200
    assert answer.content == b"other bytes"


@pytest.mark.parametrize(
    "path",
    ["%2E%2E/state.sqlite", "OCR-D-IMG/%2E%2E/%2E%2E/state.sqlite", ".ocrswarm.json", "a//b"],
)
def test_paths_that_leave_the_workspace_or_hide_are_refused(
    served: FileServer, http: httpx.Client, path: str
) -> None:
    answer = http.get(url(served, path), headers=bearer(Role.ADMIN))

    assert answer.status_code == 403, answer.text
    assert "relative" in answer.json()["detail"]


def test_a_symlink_out_of_the_workspace_is_refused(
    served: FileServer, http: httpx.Client, tmp_path: Path
) -> None:
    (served.workspace.directory / "outside.png").symlink_to(tmp_path / "state.sqlite")

    answer = http.get(url(served, "outside.png"), headers=bearer(Role.ADMIN))

    assert answer.status_code == 403
    assert "outside" in answer.json()["detail"]


def test_unknown_workspaces_and_files_are_404(served: FileServer, http: httpx.Client) -> None:
    no_workspace = http.get(url(served, image_href(served), "nope"), headers=bearer(Role.READER))
    no_file = http.get(url(served, "OCR-D-IMG/nope.png"), headers=bearer(Role.READER))
    directory = http.get(url(served, "OCR-D-IMG"), headers=bearer(Role.READER))

    assert [no_workspace.status_code, no_file.status_code, directory.status_code] == [404] * 3
    assert "nope.png" in no_file.json()["detail"]


def test_a_worker_uploads_an_output_of_its_lease(served: FileServer, http: httpx.Client) -> None:
    lease = served.lease()
    href = f"OCR-D-A/OCR-D-A_{lease.page_id}.xml"

    answer = put(http, served, href, b"<PcGts/>", lease)

    assert answer.status_code == 200, answer.text
    assert (served.workspace.directory / href).read_bytes() == b"<PcGts/>"
    assert answer.json()["bytes"] == 8
    download = http.get(url(served, href), headers=bearer(Role.READER))
    assert download.headers["etag"] == answer.json()["etag"]


def test_an_upload_replaces_the_file_and_leaves_no_temporary_file(
    served: FileServer, http: httpx.Client
) -> None:
    lease = served.lease()
    href = f"OCR-D-A/OCR-D-A_{lease.page_id}.xml"
    put(http, served, href, b"first", lease).raise_for_status()

    put(http, served, href, b"second", lease).raise_for_status()

    assert sorted(p.name for p in (served.workspace.directory / "OCR-D-A").iterdir()) == [
        f"OCR-D-A_{lease.page_id}.xml"
    ]
    assert (served.workspace.directory / href).read_bytes() == b"second"


@pytest.mark.parametrize("path", ["OCR-D-IMG/page.png", "mets.xml", "OCR-D-B/b.xml", "OCR-D-A"])
def test_a_lease_allows_writing_only_in_its_output_file_grps(
    served: FileServer, http: httpx.Client, path: str
) -> None:
    lease = served.lease()
    before = (served.workspace.mets_path).read_bytes()

    answer = put(http, served, path, b"overwritten", lease)

    assert answer.status_code == 403, answer.text
    assert "OCR-D-A" in answer.json()["detail"]
    assert served.workspace.mets_path.read_bytes() == before


def test_a_lease_no_longer_held_cannot_upload(served: FileServer, http: httpx.Client) -> None:
    lease = served.lease()
    href = f"OCR-D-A/OCR-D-A_{lease.page_id}.xml"
    assert served.store.complete([TaskResult(lease.task_id, lease.token)]) == [True]

    finished = put(http, served, href, b"late", lease)
    forged = put(http, served, href, b"forged", f"{lease.task_id}.not-the-token")

    assert finished.status_code == 409
    assert "lease" in finished.json()["detail"]
    assert forged.status_code == 409
    assert not (served.workspace.directory / href).exists()


def test_a_reader_cannot_upload(served: FileServer, http: httpx.Client) -> None:
    lease = served.lease()

    answer = http.put(
        url(served, f"OCR-D-A/OCR-D-A_{lease.page_id}.xml"),
        content=b"x",
        headers={**bearer(Role.READER), LEASE_HEADER: lease.token},
    )

    assert answer.status_code == 403
    assert "worker" in answer.json()["detail"]


@pytest.mark.parametrize("chunked", [False, True])
def test_a_file_over_the_limit_is_413_and_leaves_nothing(
    served: FileServer, http: httpx.Client, chunked: bool
) -> None:
    lease = served.lease()
    href = f"OCR-D-A/OCR-D-A_{lease.page_id}.xml"
    body = b"x" * (MAX_FILE_BYTES + 1)
    content = iter([body[:1000], body[1000:]]) if chunked else body

    answer = http.put(
        url(served, href),
        content=content,
        headers={**bearer(Role.WORKER), LEASE_HEADER: lease.token},
    )

    assert answer.status_code == 413
    output_dir = served.workspace.directory / "OCR-D-A"
    assert not output_dir.exists() or list(output_dir.iterdir()) == []
