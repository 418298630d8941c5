"""FileTransfer: a worker's files from and to the server over real HTTP, into a mirror."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from ocrswarm.engine.records import FileRef, TaskLease, TaskResult
from ocrswarm.engine.transfer import (
    FileTransfer,
    LeaseLostError,
    ServerUnreachableError,
    TokenRejectedError,
    TransferError,
    workspace_relative,
)
from ocrswarm.engine.workerprocess import ResidentProcessors, Work
from ocrswarm.errors import FormatError
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import AlternativeImage, PcGts, page_to_bytes
from ocrswarm.server.auth import Role
from tests.server.conftest import free_port
from tests.server.fileserver import FileServer, file_server
from tests.server.servers import TOKENS

QUICK = (0.01, 0.01)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[FileServer]:
    with file_server(tmp_path / "server") as started:
        yield started


@pytest.fixture
def transfer(served: FileServer, tmp_path: Path) -> Iterator[FileTransfer]:
    with FileTransfer(served.url, TOKENS[Role.WORKER], tmp_path / "mirror", backoff=QUICK) as made:
        yield made


def test_fetch_mirrors_the_inputs_and_points_the_lease_at_the_mirror(
    served: FileServer, transfer: FileTransfer
) -> None:
    lease = served.lease()

    mirrored = transfer.fetch(lease)

    assert mirrored.workspace_dir == transfer.mirror / served.workspace_id
    assert mirrored.workspace_dir != served.workspace.directory
    job = mirrored.page_job()
    (image,) = job.inputs
    assert image.path.is_relative_to(mirrored.workspace_dir.resolve())
    assert (
        image.path.read_bytes() == (served.workspace.directory / lease.inputs[0].href).read_bytes()
    )


def test_a_page_input_brings_the_images_it_names(
    served: FileServer, transfer: FileTransfer
) -> None:
    first = served.lease()
    image = served.workspace.directory / first.inputs[0].href
    binarized = f"OCR-D-A/OCR-D-A_{first.page_id}.IMG-BIN.png"
    (served.workspace.directory / "OCR-D-A").mkdir()
    (served.workspace.directory / binarized).write_bytes(b"binarized pixels")
    pcgts = PcGts.new(first.inputs[0].href, 120, 160)
    pcgts.page.alternative_images.append(AlternativeImage(binarized, "binarized"))
    page_href = f"OCR-D-A/OCR-D-A_{first.page_id}.xml"
    (served.workspace.directory / page_href).write_bytes(page_to_bytes(pcgts))
    output = FileRef("OCR-D-A", f"OCR-D-A_{first.page_id}", MIMETYPE_PAGE, page_href, first.page_id)
    assert served.store.complete([TaskResult(first.task_id, first.token, [output])]) == [True]
    second = next(
        lease
        for lease in served.store.claim("remote", limit=4)
        if lease.inputs[0].href == page_href
    )

    mirrored = transfer.fetch(second)

    mirror = mirrored.workspace_dir
    assert (mirror / page_href).read_bytes() == (
        served.workspace.directory / page_href
    ).read_bytes()
    assert (mirror / first.inputs[0].href).read_bytes() == image.read_bytes()
    assert (mirror / binarized).read_bytes() == b"binarized pixels"


def test_a_file_in_the_mirror_is_revalidated_not_downloaded_again(
    served: FileServer, transfer: FileTransfer
) -> None:
    lease = served.lease()
    mirrored = transfer.fetch(lease)
    path = mirrored.workspace_dir / mirrored.inputs[0].href
    inode = path.stat().st_ino

    transfer.fetch(lease)

    assert path.stat().st_ino == inode  # a download would have replaced the file


def test_another_worker_process_reuses_the_mirror_too(
    served: FileServer, transfer: FileTransfer
) -> None:
    lease = served.lease()
    mirrored = transfer.fetch(lease)
    path = mirrored.workspace_dir / mirrored.inputs[0].href
    try:
        os.getxattr(path, "user.ocrswarm.etag")
    except OSError:
        pytest.skip(
            "this file system keeps no extended attributes (then each process revalidates its own)"
        )
    inode = path.stat().st_ino

    with FileTransfer(served.url, TOKENS[Role.WORKER], transfer.mirror) as other:
        other.fetch(lease)

    assert path.stat().st_ino == inode


def test_a_changed_file_is_downloaded_again(served: FileServer, transfer: FileTransfer) -> None:
    lease = served.lease()
    mirrored = transfer.fetch(lease)
    (served.workspace.directory / lease.inputs[0].href).write_bytes(b"new pixels")

    transfer.fetch(lease)

    assert (mirrored.workspace_dir / mirrored.inputs[0].href).read_bytes() == b"new pixels"


def test_push_puts_the_outputs_on_the_server_before_completion(
    served: FileServer, transfer: FileTransfer
) -> None:
    mirrored = transfer.fetch(served.lease())
    job = mirrored.page_job()
    output = job.write_output(
        b"<PcGts/>", file_grp="OCR-D-A", file_id="OCR-D-A_1", mimetype=MIMETYPE_PAGE, suffix=".xml"
    )

    transfer.push(mirrored, [output])

    assert (served.workspace.directory / output.href).read_bytes() == b"<PcGts/>"
    result = TaskResult.from_outputs(mirrored, [output])
    assert served.store.complete([result]) == [True]


def test_a_push_after_the_lease_was_lost_says_so(
    served: FileServer, transfer: FileTransfer
) -> None:
    mirrored = transfer.fetch(served.lease())
    output = mirrored.page_job().write_output(
        b"late", file_grp="OCR-D-A", file_id="OCR-D-A_1", mimetype="text/plain", suffix=".txt"
    )
    served.store.release("remote")

    with pytest.raises(LeaseLostError, match="lease"):
        transfer.push(mirrored, [output])


def test_a_rejected_token_says_so(served: FileServer, tmp_path: Path) -> None:
    lease = served.lease()
    with (
        FileTransfer(served.url, "wrong", tmp_path / "m1", backoff=QUICK) as unknown,
        FileTransfer(served.url, TOKENS[Role.READER], tmp_path / "m2", backoff=QUICK) as reader,
    ):
        with pytest.raises(TokenRejectedError, match="401"):
            unknown.fetch(lease)
        mirrored = reader.fetch(lease)
        output = mirrored.page_job().write_output(
            b"x", file_grp="OCR-D-A", file_id="OCR-D-A_1", mimetype="text/plain", suffix=".txt"
        )
        with pytest.raises(TokenRejectedError, match="403"):
            reader.push(mirrored, [output])


def test_the_token_can_be_checked_before_any_page(served: FileServer, tmp_path: Path) -> None:
    with (
        FileTransfer(served.url, TOKENS[Role.WORKER], tmp_path / "m1", backoff=QUICK) as good,
        FileTransfer(served.url, "wrong", tmp_path / "m2", backoff=QUICK) as bad,
    ):
        good.check_token()
        with pytest.raises(TokenRejectedError, match="token"):
            bad.check_token()


def test_an_unreachable_server_is_retried_then_fails(served: FileServer, tmp_path: Path) -> None:
    lease = served.lease()
    nobody = f"http://127.0.0.1:{free_port()}"

    with (
        FileTransfer(nobody, TOKENS[Role.WORKER], tmp_path / "m", backoff=QUICK) as transfer,
        pytest.raises(ServerUnreachableError, match="3 attempts"),
    ):
        transfer.fetch(lease)


def test_a_missing_input_fails_the_fetch(served: FileServer, transfer: FileTransfer) -> None:
    lease = served.lease()
    (served.workspace.directory / lease.inputs[0].href).unlink()

    with pytest.raises(TransferError, match="404"):
        transfer.fetch(lease)


@pytest.mark.parametrize(
    ("href", "relative"),
    [
        ("OCR-D-IMG/a.png", "OCR-D-IMG/a.png"),
        ("./OCR-D-IMG/a.png", "OCR-D-IMG/a.png"),
        ("/srv/ws/OCR-D-IMG/a.png", "OCR-D-IMG/a.png"),
        ("file:///srv/ws/OCR-D-IMG/a%20b.png", "OCR-D-IMG/a b.png"),
    ],
)
def test_hrefs_become_workspace_relative(href: str, relative: str) -> None:
    assert workspace_relative(Path("/srv/ws"), href) == relative


@pytest.mark.parametrize("href", ["/srv/other/a.png", "../a.png", "https://example.org/a.png"])
def test_hrefs_outside_the_workspace_are_refused_as_bad_data(href: str) -> None:
    with pytest.raises(FormatError):
        workspace_relative(Path("/srv/ws"), href)


def test_a_lease_converts_for_the_mirror_without_losing_anything(
    served: FileServer, transfer: FileTransfer
) -> None:
    lease = served.lease()
    mirrored = transfer.fetch(lease)

    assert TaskLease.from_dict(mirrored.to_dict()) == mirrored
    assert (mirrored.task_id, mirrored.token, mirrored.page_id) == (
        lease.task_id,
        lease.token,
        lease.page_id,
    )


def test_a_worker_process_runs_the_page_on_the_mirror_and_pushes_what_it_wrote(
    served: FileServer, tmp_path: Path
) -> None:
    lease = served.lease()
    transfer = FileTransfer(served.url, TOKENS[Role.WORKER], tmp_path / "mirror", backoff=QUICK)
    processors = ResidentProcessors(transfer)
    try:
        answer = processors.process(Work.of(lease))
    finally:
        processors.close()

    assert answer.error is None, answer.traceback
    (output,) = answer.files()
    on_server = served.workspace.directory / output.href
    assert (
        on_server.read_bytes()
        == (transfer.mirror_of(lease.workspace_id) / output.href).read_bytes()
    )
    assert served.store.complete([TaskResult(lease.task_id, lease.token, answer.files())]) == [True]


def test_a_page_whose_outputs_cannot_be_pushed_fails_to_be_retried(
    served: FileServer, tmp_path: Path
) -> None:
    lease = served.lease()
    served.store.release("remote")  # the lease is gone before the page is pushed
    processors = ResidentProcessors(
        FileTransfer(served.url, TOKENS[Role.WORKER], tmp_path / "mirror", backoff=QUICK)
    )
    try:
        answer = processors.process(Work.of(lease))
    finally:
        processors.close()

    assert answer.error is not None and "lease" in answer.error
    assert answer.retry
    assert answer.outputs == ()
