"""The workspace section over real HTTP: upload, replace, list, download, delete, bad bags."""

from __future__ import annotations

import shutil
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from ocrswarm.formats.mets import Mets
from ocrswarm.formats.ocrdzip import pack_workspace, unpack_bag
from tests.server.conftest import ServerProcess, wait_for
from tests.server.servers import running_server

OCRD_ZIP = "application/vnd.ocrd+zip"
MAX_UPLOAD = 200_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("workspace-server")
    with running_server(root, f"max_upload_bytes = {MAX_UPLOAD}\n") as started:
        yield started


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


@pytest.fixture
def make_bag(make_workspace: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """Factory: an OCRD-ZIP of a fresh workspace of `pages` rendered pages."""

    def make(pages: int = 2, name: str = "ws") -> Path:
        mets = make_workspace(pages=pages, name=name)
        return pack_workspace(mets, tmp_path / f"{name}.ocrd.zip")

    return make


def upload(client: httpx.Client, bag: Path, workspace_id: str | None = None) -> httpx.Response:
    body = bag.read_bytes()
    headers = {"Content-Type": OCRD_ZIP}
    if workspace_id is None:
        return client.post("/workspace", content=body, headers=headers)
    return client.put(f"/workspace/{workspace_id}", content=body, headers=headers)


def download(client: httpx.Client, workspace_id: str, into: Path) -> Path:
    """GET the workspace as OCRD-ZIP and unpack it into `into`; its METS path."""
    answer = client.get(f"/workspace/{workspace_id}", headers={"Accept": OCRD_ZIP})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == OCRD_ZIP
    bag = into.with_suffix(".ocrd.zip")
    bag.write_bytes(answer.content)
    return unpack_bag(bag, into)


def payload(directory: Path) -> dict[str, bytes]:
    """Every file of an unpacked workspace but its METS, by relative path."""
    return {
        str(path.relative_to(directory)): path.read_bytes()
        for path in directory.rglob("*")
        if path.is_file() and path.name not in ("mets.xml", ".ocrswarm.json")
    }


def leftovers(server: ServerProcess) -> list[str]:
    """Staging directories, uploads or downloads that a finished request left behind."""
    found = []
    workspaces = server.data_dir / "workspaces"
    if workspaces.is_dir():
        found += [
            p.name for p in workspaces.iterdir() if p.name.startswith(".") and p.name != ".deleted"
        ]
    uploads = server.data_dir / "uploads"
    if uploads.is_dir():
        found += [p.name for p in uploads.iterdir()]
    return found


def files_outside(root: Path, data_dir: Path) -> set[Path]:
    return {path for path in root.rglob("*") if not path.is_relative_to(data_dir)}


def test_an_uploaded_workspace_comes_back_as_the_same_files(
    client: httpx.Client, server: ServerProcess, make_workspace: Callable[..., Path], tmp_path: Path
) -> None:
    mets = make_workspace(pages=3)
    bag = pack_workspace(mets, tmp_path / "book.ocrd.zip")

    created = upload(client, bag)

    assert created.status_code == 201, created.text
    workspace = created.json()
    assert workspace["@id"] == f"{client.base_url}/workspace/{workspace['workspace_id']}"
    back = download(client, workspace["workspace_id"], tmp_path / "back")
    assert payload(back.parent) == payload(mets.parent)
    sent, received = Mets.read(mets), Mets.read(back)
    assert [f.id for f in received.files] == [f.id for f in sent.files]
    assert received.page_ids == sent.page_ids
    assert leftovers(server) == []


def test_metadata_as_json_and_in_the_listing(
    client: httpx.Client, make_bag: Callable[..., Path]
) -> None:
    workspace_id = upload(client, make_bag()).json()["workspace_id"]

    answer = client.get(f"/workspace/{workspace_id}", headers={"Accept": "application/json"})

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "application/json"
    metadata = answer.json()
    assert metadata["workspace_id"] == workspace_id
    assert Path(metadata["mets_path"]).is_file()
    assert metadata["ocrd_identifier"]
    listed = client.get("/workspace").json()
    assert {"@id": metadata["@id"], "description": metadata["description"]} in listed


def test_delete_answers_410_for_that_id_afterwards(
    client: httpx.Client, make_bag: Callable[..., Path]
) -> None:
    workspace = upload(client, make_bag()).json()
    workspace_id = workspace["workspace_id"]
    directory = Path(workspace["mets_path"]).parent

    deleted = client.delete(f"/workspace/{workspace_id}")

    assert deleted.status_code == 200
    assert deleted.json()["@id"] == workspace["@id"]
    assert not directory.exists()
    for answer in (
        client.get(f"/workspace/{workspace_id}"),
        client.delete(f"/workspace/{workspace_id}"),
    ):
        assert answer.status_code == 410
        assert workspace_id in answer.json()["detail"]
    assert workspace["@id"] not in [item["@id"] for item in client.get("/workspace").json()]


def test_an_unknown_workspace_is_404(client: httpx.Client) -> None:
    for answer in (
        client.get("/workspace/no-such-thing"),
        client.delete("/workspace/no-such-thing"),
    ):
        assert answer.status_code == 404
        assert "no-such-thing" in answer.json()["detail"]


def test_put_creates_then_replaces(
    client: httpx.Client, make_workspace: Callable[..., Path], tmp_path: Path
) -> None:
    first = make_workspace(pages=1, name="first")
    second = make_workspace(pages=3, name="second")

    created = upload(client, pack_workspace(first, tmp_path / "1.ocrd.zip"), "my-book")
    replaced = upload(client, pack_workspace(second, tmp_path / "2.ocrd.zip"), "my-book")

    assert created.status_code == 200, created.text
    assert replaced.status_code == 200, replaced.text
    assert created.json()["@id"] == replaced.json()["@id"]
    back = download(client, "my-book", tmp_path / "back")
    assert Mets.read(back).page_ids == Mets.read(second).page_ids
    assert payload(back.parent) == payload(second.parent)


def test_a_failed_replacement_keeps_the_old_workspace(
    client: httpx.Client, server: ServerProcess, make_bag: Callable[..., Path], tmp_path: Path
) -> None:
    bag = make_bag(pages=2)
    assert upload(client, bag, "keep-me").status_code == 200
    corrupt = tmp_path / "corrupt.ocrd.zip"
    corrupt.write_bytes(bag.read_bytes()[: len(bag.read_bytes()) // 2])

    answer = upload(client, corrupt, "keep-me")

    assert answer.status_code == 400
    back = download(client, "keep-me", tmp_path / "back")
    assert len(Mets.read(back).page_ids) == 2
    assert leftovers(server) == []


def test_a_corrupt_ocrd_zip_is_400(
    client: httpx.Client, server: ServerProcess, tmp_path: Path
) -> None:
    not_a_zip = tmp_path / "noise.ocrd.zip"
    not_a_zip.write_bytes(b"PK\x03\x04 this is not really a zip archive" * 20)

    answer = upload(client, not_a_zip)

    assert answer.status_code == 400
    assert "uploaded OCRD-ZIP" in answer.json()["detail"]
    assert str(server.data_dir) not in answer.text  # no server paths, no traceback
    assert "Traceback" not in answer.text
    assert leftovers(server) == []


def test_a_bag_with_a_wrong_checksum_is_400(
    client: httpx.Client, make_bag: Callable[..., Path], tmp_path: Path
) -> None:
    bag = make_bag()
    tampered = tmp_path / "tampered.ocrd.zip"
    with zipfile.ZipFile(bag) as original, zipfile.ZipFile(tampered, "w") as copy:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith(".png"):
                data = data[:-1] + bytes([data[-1] ^ 0xFF])
            copy.writestr(info, data)

    answer = upload(client, tampered)

    assert answer.status_code == 400
    assert (
        "checksum" in answer.json()["detail"].lower() or "sha512" in answer.json()["detail"].lower()
    )


@pytest.mark.parametrize(
    "member", ["../../escaped.txt", "data/../../escaped.txt", "/tmp/escaped.txt"]
)
def test_a_zip_slip_bag_is_400_and_writes_nothing_outside(
    client: httpx.Client,
    server: ServerProcess,
    make_bag: Callable[..., Path],
    tmp_path: Path,
    member: str,
) -> None:
    bag = make_bag()
    hostile = tmp_path / "hostile.ocrd.zip"
    shutil.copy(bag, hostile)
    with zipfile.ZipFile(hostile, "a") as archive:
        archive.writestr(zipfile.ZipInfo(member), b"written outside the data dir")
    root = server.data_dir.parent
    before = files_outside(root, server.data_dir)

    answer = upload(client, hostile)

    assert answer.status_code == 400
    assert "detail" in answer.json()
    assert files_outside(root, server.data_dir) - before == set()
    assert not list(Path("/tmp").glob("escaped.txt"))
    assert leftovers(server) == []


def test_an_upload_must_be_an_ocrd_zip(client: httpx.Client) -> None:
    answer = client.post("/workspace", json={"not": "a zip"})

    assert answer.status_code == 415
    assert OCRD_ZIP in answer.json()["detail"]


def test_a_workspace_id_must_be_a_plain_name(
    client: httpx.Client, make_bag: Callable[..., Path]
) -> None:
    answer = upload(client, make_bag(), "-starts-with-a-dash")

    assert answer.status_code == 400
    assert "-starts-with-a-dash" in answer.json()["detail"]


def test_an_upload_over_the_limit_is_413(client: httpx.Client) -> None:
    answer = client.post(
        "/workspace", content=b"\0" * (MAX_UPLOAD + 1), headers={"Content-Type": OCRD_ZIP}
    )

    assert answer.status_code == 413
    assert str(MAX_UPLOAD) in answer.json()["detail"]


def test_a_streamed_upload_over_the_limit_is_413_and_its_partial_file_removed(
    client: httpx.Client,
    server: ServerProcess,
) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(MAX_UPLOAD // 8192 + 2):
            yield b"\0" * 8192

    answer = client.post("/workspace", content=chunks(), headers={"Content-Type": OCRD_ZIP})

    assert answer.status_code == 413
    assert "detail" in answer.json()
    assert leftovers(server) == []


def test_jobs_run_on_an_uploaded_workspace_by_its_id(
    client: httpx.Client, make_bag: Callable[..., Path]
) -> None:
    workspace_id = upload(client, make_bag(pages=2)).json()["workspace_id"]

    job = client.post(
        "/processor/run/ocrd-dummy",
        json={
            "workspace_id": workspace_id,
            "input_file_grps": ["OCR-D-IMG"],
            "output_file_grps": ["OUT"],
        },
    )

    assert job.status_code == 200, job.text
    done = wait_for(
        client,
        f"/processor/job/{job.json()['job_id']}",
        lambda j: j["state"] in ("SUCCESS", "FAILED"),
    )
    assert done["state"] == "SUCCESS"
    metadata = client.get(f"/workspace/{workspace_id}").json()
    assert "OUT" in Mets.read(Path(metadata["mets_path"])).file_groups


def test_a_workspace_with_unfinished_jobs_cannot_be_replaced_or_deleted(
    client: httpx.Client, make_bag: Callable[..., Path]
) -> None:
    bag = make_bag(pages=1)
    workspace = upload(client, bag).json()
    job = client.post(
        "/processor/run/ocrd-test-sleep",
        json={
            "path_to_mets": workspace["mets_path"],
            "input_file_grps": ["OCR-D-IMG"],
            "output_file_grps": ["SLOW"],
            "parameters": {"seconds": 60},
        },
    )
    assert job.status_code == 200, job.text

    deleted = client.delete(f"/workspace/{workspace['workspace_id']}")
    replaced = upload(client, bag, workspace["workspace_id"])

    for answer in (deleted, replaced):
        assert answer.status_code == 409
        assert job.json()["job_id"] in answer.json()["detail"]
    assert Path(workspace["mets_path"]).is_file()
    client.post(f"/job/{job.json()['job_id']}/cancel")


def test_put_brings_a_deleted_id_back(client: httpx.Client, make_bag: Callable[..., Path]) -> None:
    bag = make_bag()
    assert upload(client, bag, "phoenix").status_code == 200
    assert client.delete("/workspace/phoenix").status_code == 200

    again = upload(client, bag, "phoenix")

    assert again.status_code == 200
    assert client.get("/workspace/phoenix").status_code == 200


@pytest.mark.parametrize("name", ["example_ws2", "example_ws_different_mets"])
def test_real_ocrd_core_bags_upload_and_download(
    client: httpx.Client, shared_data: Path, tmp_path: Path, name: str
) -> None:
    bag = shared_data / "ocrd-zip" / f"{name}.ocrd.zip"
    with zipfile.ZipFile(bag) as archive:
        info = archive.read("bag-info.txt").decode()
    fields = dict(line.split(": ", 1) for line in info.splitlines() if ": " in line)

    created = upload(client, bag)

    assert created.status_code == 201, created.text
    workspace = created.json()
    assert workspace["ocrd_identifier"] == fields["Ocrd-Identifier"]
    assert Path(workspace["mets_path"]).name == fields.get("Ocrd-Mets", "mets.xml")
    back = download(client, workspace["workspace_id"], tmp_path / "back")
    assert Mets.read(back).page_ids == Mets.read(Path(workspace["mets_path"])).page_ids
