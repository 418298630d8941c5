"""Single files of a workspace over HTTP, for workers without the shared directory.

A worker on a machine that does not mount the data directory (`ocrswarm worker --server URL
--token T`) downloads a page task's input files and uploads its output files here, by
workspace id (an uploaded workspace's id, or the store's id a task carries) and the file's
path relative to the workspace directory — the href the METS has for it.

Reading needs a reader token. Writing needs a worker token *and* the lease of a page task
(`X-Ocrswarm-Lease: <lease token>`) that is still running: a file may be written only in
that task's workspace and inside one of its output fileGrps' directories, so a worker token
cannot overwrite page images, the METS or another job's results, and a worker whose lease
was taken back cannot overwrite the files of the worker that has the page now. Paths are
checked before anything is touched: relative, no `..`, no hidden names (the METS writer's
and the uploads' temporary files), and no symlink out of the workspace. An upload is
streamed into a temporary file beside its target and renamed into place after an fsync, so
the file is complete and durable before the task that made it is recorded as done.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, BinaryIO

import anyio
from fastapi import APIRouter, Depends, Header, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from ocrswarm.engine.queue import HeldLease
from ocrswarm.engine.store import Store
from ocrswarm.engine.submission import workspace_id_for
from ocrswarm.engine.transfer import LEASE_HEADER
from ocrswarm.errors import NotFoundError, UnsafeInputError
from ocrswarm.formats.atomicfile import atomic_writer
from ocrswarm.formats.workspace import resolve_href
from ocrswarm.server.auth import Role, require
from ocrswarm.server.deps import SettingsDep, StoreDep, UploadedWorkspaces, UploadedWorkspacesDep
from ocrswarm.server.limits import RequestTooLarge
from ocrswarm.server.schemas import ErrorBody

router = APIRouter(tags=["files"])

FILE_ROUTE = "/workspace/{workspace_id}/files/{path:path}"
CHUNK_BYTES = 1024 * 1024
OCTET_STREAM = "application/octet-stream"

WorkspaceIdPath = Annotated[
    str, PathParam(description="an uploaded workspace's id, or the store's id of a workspace")
]
FilePath = Annotated[
    str, PathParam(description="the file's path relative to the workspace (its METS href)")
]
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "No such workspace or file"}
}


class StoredFile(BaseModel):
    """What an upload stored."""

    path: str = Field(description="the file's path relative to the workspace")
    bytes: int
    etag: str = Field(description="the ETag a download of this content carries")


def checked_relative(path: str) -> PurePosixPath:
    """`path` as a relative POSIX path that names a visible file below a workspace, else
    UnsafeInputError (403): absolute, `..`, `.`, empty or hidden components, backslashes,
    NUL."""
    if not path or "\x00" in path or "\\" in path:
        raise UnsafeInputError(f"file path {path!r} is not a valid relative path")
    relative = PurePosixPath(path)
    parts = path.split("/")
    if relative.is_absolute() or any(not part or part.startswith(".") for part in parts):
        raise UnsafeInputError(
            f"file path {path!r} must be relative, without '..', empty or hidden parts"
        )
    return relative


def workspace_directory(
    store: Store, uploaded: UploadedWorkspaces, workspace_id: str
) -> tuple[str, Path]:
    """The store's id and the directory of the workspace `workspace_id` names: an uploaded
    workspace's id (as the workspace routes know it) or the store's own id (as page tasks
    carry it). NotFoundError (404) when it names neither."""
    upload = uploaded(workspace_id)
    if upload is not None:
        return workspace_id_for(upload), upload.parent
    info = store.workspace(workspace_id)
    return info.id, info.directory


def file_in_workspace(directory: Path, relative: PurePosixPath) -> Path:
    """The real path of `relative` below `directory`; UnsafeInputError if a symlink on the
    way leads out of the workspace."""
    return resolve_href(directory, relative.as_posix())


def etag_of(status: os.stat_result) -> str:
    """An ETag that changes whenever the file is replaced or rewritten."""
    return f'"{status.st_ino:x}-{status.st_size:x}-{status.st_mtime_ns:x}"'


def _chunks(stream: BinaryIO) -> Iterator[bytes]:
    with stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


@router.get(
    FILE_ROUTE,
    dependencies=[Depends(require(Role.READER))],
    summary="Download one file of a workspace",
    description=(
        "Streams the file with an ETag; with `If-None-Match` and an unchanged file, 304 "
        "without a body (a worker's mirror revalidates what it has)."
    ),
    response_class=Response,
    responses={
        200: {"content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}},
        304: {"description": "Not modified since the ETag given in If-None-Match"},
        **_NOT_FOUND,
    },
)
def download_file(
    workspace_id: WorkspaceIdPath,
    path: FilePath,
    request: Request,
    store: StoreDep,
    uploaded: UploadedWorkspacesDep,
) -> Response:
    relative = checked_relative(path)
    _store_id, directory = workspace_directory(store, uploaded, workspace_id)
    real = file_in_workspace(directory, relative)
    try:
        stream = open(real, "rb")  # noqa: SIM115 — closed by the response's iterator
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFoundError(f"workspace {workspace_id!r} has no file {path!r}") from None
    status = os.fstat(stream.fileno())
    if not stat.S_ISREG(status.st_mode):
        stream.close()
        raise NotFoundError(f"workspace {workspace_id!r} has no file {path!r}")
    etag = etag_of(status)
    if etag in _etags(request.headers.get("if-none-match")):
        stream.close()
        return Response(status_code=304, headers={"ETag": etag})
    media_type = mimetypes.guess_type(real.name)[0] or OCTET_STREAM
    return StreamingResponse(
        _chunks(stream),
        media_type=media_type,
        headers={"ETag": etag, "Content-Length": str(status.st_size)},
    )


def _etags(header: str | None) -> set[str]:
    if not header:
        return set()
    return {tag.strip().removeprefix("W/") for tag in header.split(",")}


@router.put(
    FILE_ROUTE,
    dependencies=[Depends(require(Role.WORKER))],
    summary="Upload an output file of a page task whose lease the caller holds",
    description=(
        f"The body is the file's bytes. `{LEASE_HEADER}` names the lease of a running page "
        "task; the file must lie in that task's workspace, inside one of its output "
        "fileGrps' directories. It replaces any file of that path atomically and durably."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}},
        }
    },
    responses={
        **_NOT_FOUND,
        409: {"model": ErrorBody, "description": "The lease is no longer held"},
        413: {"model": ErrorBody, "description": "The file is too large"},
    },
)
async def upload_file(
    workspace_id: WorkspaceIdPath,
    path: FilePath,
    request: Request,
    store: StoreDep,
    settings: SettingsDep,
    uploaded: UploadedWorkspacesDep,
    lease_token: Annotated[
        str, Header(alias=LEASE_HEADER, description="the lease token of the page task")
    ],
) -> StoredFile:
    relative = checked_relative(path)
    store_id, directory = await run_in_threadpool(
        workspace_directory, store, uploaded, workspace_id
    )
    lease = await run_in_threadpool(store.held_lease, lease_token)
    _check_lease(lease, store_id, relative)
    target = file_in_workspace(directory, relative)
    size = await _receive(request, target, settings.max_upload_bytes)
    return StoredFile(path=relative.as_posix(), bytes=size, etag=etag_of(os.stat(target)))


async def _receive(request: Request, target: Path, limit: int) -> int:
    """Stream the body into `target` atomically (at most `limit` bytes); its size. The
    file work (writes, fsync, rename) runs in threads, never on the event loop."""
    writer = atomic_writer(target)
    stream = await anyio.to_thread.run_sync(writer.__enter__)
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLarge(limit, "the file")
            await anyio.to_thread.run_sync(stream.write, chunk)
    except BaseException as error:
        await anyio.to_thread.run_sync(writer.__exit__, type(error), error, error.__traceback__)
        raise
    await anyio.to_thread.run_sync(writer.__exit__, None, None, None)
    return size


def _check_lease(lease: HeldLease | None, store_id: str, relative: PurePosixPath) -> None:
    """The lease must be current, of this workspace, and the file in an output fileGrp."""
    if lease is None:
        raise HTTPException(
            status_code=409,
            detail="the lease is not held (the page task finished, or was taken back and "
            "given to another worker); upload refused",
        )
    if lease.workspace_id != store_id:
        raise UnsafeInputError("the lease is for a page task of another workspace")
    if len(relative.parts) < 2 or relative.parts[0] not in lease.output_file_grps:
        grps = ", ".join(lease.output_file_grps)
        raise UnsafeInputError(
            f"{relative.as_posix()} is not inside an output fileGrp of the leased page task "
            f"({grps})"
        )
