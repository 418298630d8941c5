"""The workspace section of the OCR-D Web API: upload, replace, list, download, delete.

Uploads are OCRD-ZIPs (`application/vnd.ocrd+zip`), streamed to disk under the data directory
(at most `max_upload_bytes`, else 413 and the partial file is removed), then unpacked and
verified by `formats.ocrdzip` before they replace anything: a damaged or hostile bag is 400
and leaves nothing behind. POST names the new workspace with a fresh UUID (the bag's
Ocrd-Identifier is kept as metadata: it is not unique and not URL-safe); PUT uses the id in
its path. Every workspace is registered in the engine's store, so jobs can run on it. A
workspace with unfinished jobs cannot be replaced or deleted (409): the check and the swap
(or deletion) happen under the workspace's lock, which job submissions take too, so no job
slips in between. A deleted id answers 410.
"""

from __future__ import annotations

import shutil
import threading
import uuid
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi import Path as PathParam
from fastapi.responses import FileResponse, JSONResponse
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool

from ocrswarm.engine.states import UNFINISHED
from ocrswarm.engine.store import Store
from ocrswarm.engine.submission import workspace_id_for
from ocrswarm.errors import FormatError, UsageError
from ocrswarm.formats.ocrdzip import pack_workspace
from ocrswarm.server.auth import Role, require
from ocrswarm.server.deps import WorkspaceLocksDep, get_settings, get_store
from ocrswarm.server.limits import RequestTooLarge
from ocrswarm.server.settings import ServerSettings
from ocrswarm.server.workspaces import (
    StoredWorkspace,
    WorkspaceGoneError,
    WorkspaceLibrary,
    WorkspaceLocks,
    check_workspace_id,
)

router = APIRouter(tags=["workspace"])

OCRD_ZIP = "application/vnd.ocrd+zip"
_UPLOAD_TYPES = frozenset({OCRD_ZIP, "application/zip", "application/octet-stream"})
_ZIP_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {OCRD_ZIP: {"schema": {"type": "string", "format": "binary"}}},
    }
}
_WORKSPACE_ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"description": "Workspace not found"},
    410: {"description": "Workspace deleted before"},
}
_library_lock = threading.Lock()

StoreDep = Annotated[Store, Depends(get_store)]
SettingsDep = Annotated[ServerSettings, Depends(get_settings)]


def get_library(request: Request) -> WorkspaceLibrary:
    """The app's one WorkspaceLibrary (made on first use: its lock must be shared)."""
    state = request.app.state
    with _library_lock:
        library: WorkspaceLibrary | None = getattr(state, "workspace_library", None)
        if library is None:
            library = WorkspaceLibrary(get_settings(request).data_dir)
            library.remove_leftovers()
            state.workspace_library = library
    return library


LibraryDep = Annotated[WorkspaceLibrary, Depends(get_library)]
WorkspaceIdPath = Annotated[str, PathParam(description="ID of the workspace")]


def _url_of(request: Request, workspace_id: str) -> str:
    return str(request.url_for("get_workspace", workspace_id=workspace_id))


def _description(stored: StoredWorkspace) -> str:
    return f"Workspace {stored.ocrd_identifier or stored.id}"


def _resource(request: Request, stored: StoredWorkspace) -> dict[str, Any]:
    """The spec's Workspace object (`@id` is the workspace's URL), plus what we know of it."""
    return {
        "@id": _url_of(request, stored.id),
        "description": _description(stored),
        "workspace_id": stored.id,
        "ocrd_identifier": stored.ocrd_identifier,
        "mets_path": str(stored.mets_path),
    }


def _lookup(library: WorkspaceLibrary, workspace_id: str) -> StoredWorkspace:
    try:
        return library.get(workspace_id)
    except WorkspaceGoneError as gone:
        raise HTTPException(status_code=410, detail=str(gone)) from None


def _refuse_if_busy(store: Store, stored: StoredWorkspace, action: str) -> None:
    """409 if a job of the workspace has not finished (it reads and writes its files)."""
    busy = [
        job.id for job in store.jobs(workspace_id_for(stored.mets_path)) if job.state in UNFINISHED
    ]
    if busy:
        shown = ", ".join(busy[:5]) + (" …" if len(busy) > 5 else "")
        raise HTTPException(
            status_code=409,
            detail=f"workspace {stored.id!r} has unfinished jobs ({shown}); cannot {action} it",
        )


async def _receive_upload(request: Request, library: WorkspaceLibrary, limit: int) -> Path:
    """Stream the request body to a new file under uploads/ (at most `limit` bytes)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type not in _UPLOAD_TYPES:
        raise HTTPException(
            status_code=415, detail=f"send the workspace as {OCRD_ZIP}, not {content_type!r}"
        )
    path = library.new_upload_path()
    size = 0
    try:
        with open(path, "xb") as stream:
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise RequestTooLarge(limit, "the upload")
                await anyio.to_thread.run_sync(stream.write, chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    if size == 0:
        path.unlink(missing_ok=True)
        raise HTTPException(status_code=400, detail="the request body is empty; send an OCRD-ZIP")
    return path


async def _store_upload(
    request: Request,
    library: WorkspaceLibrary,
    store: Store,
    settings: ServerSettings,
    locks: WorkspaceLocks,
    workspace_id: str,
) -> StoredWorkspace:
    """Receive, unpack, verify and install the uploaded bag as `workspace_id`."""
    bag = await _receive_upload(request, library, settings.max_upload_bytes)
    try:
        staged = await run_in_threadpool(library.unpack, workspace_id, bag)
    except FormatError as error:  # damaged (BagError) or hostile (UnsafeInputError): 400
        message = str(error).replace(str(bag), "the uploaded OCRD-ZIP")
        raise HTTPException(status_code=400, detail=message) from None
    finally:
        bag.unlink(missing_ok=True)
    try:
        stored = await run_in_threadpool(
            install_unless_busy, library, store, locks, workspace_id, staged
        )
    finally:
        await run_in_threadpool(_remove_tree, staged)
    await run_in_threadpool(store.add_workspace, stored.mets_path)
    return stored


def install_unless_busy(
    library: WorkspaceLibrary,
    store: Store,
    locks: WorkspaceLocks,
    workspace_id: str,
    staged: Path,
) -> StoredWorkspace:
    """Swap the staged workspace in, unless the one it replaces has unfinished jobs (409):
    both under the workspace's lock, so that no job is submitted between check and swap."""
    with locks.hold(library.directory(workspace_id)):
        if library.exists(workspace_id):
            _refuse_if_busy(store, library.get(workspace_id), "replace")
        return library.install(workspace_id, staged)


def _remove_tree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


@router.get(
    "/workspace",
    dependencies=[Depends(require(Role.READER))],
    summary="List the workspaces",
)
def list_workspaces(request: Request, library: LibraryDep) -> list[dict[str, Any]]:
    listed = []
    for workspace_id in library.ids():
        try:
            stored = library.get(workspace_id)
        except UsageError:  # deleted meanwhile
            continue
        listed.append(
            {
                "@id": _url_of(request, stored.id),
                "description": _description(stored),
            }
        )
    return listed


@router.post(
    "/workspace",
    status_code=201,
    dependencies=[Depends(require(Role.SUBMITTER))],
    summary="Post a new workspace (OCRD-ZIP)",
    openapi_extra=_ZIP_BODY,
    responses={400: {"description": "Invalid workspace"}, 413: {"description": "Too large"}},
)
async def create_workspace(
    request: Request,
    library: LibraryDep,
    store: StoreDep,
    settings: SettingsDep,
    locks: WorkspaceLocksDep,
) -> JSONResponse:
    stored = await _store_upload(request, library, store, settings, locks, str(uuid.uuid4()))
    return JSONResponse(_resource(request, stored), status_code=201)


@router.put(
    "/workspace/{workspace_id}",
    dependencies=[Depends(require(Role.SUBMITTER))],
    summary="Replace an existing workspace, or create it",
    openapi_extra=_ZIP_BODY,
    responses={
        400: {"description": "Workspace invalid"},
        409: {"description": "Workspace has unfinished jobs"},
        413: {"description": "Too large"},
    },
)
async def replace_workspace(
    workspace_id: WorkspaceIdPath,
    request: Request,
    library: LibraryDep,
    store: StoreDep,
    settings: SettingsDep,
    locks: WorkspaceLocksDep,
) -> JSONResponse:
    try:
        check_workspace_id(workspace_id)
    except UsageError as error:
        raise HTTPException(status_code=400, detail=str(error)) from None
    if library.exists(workspace_id):  # early, before the upload; checked again at the swap
        await run_in_threadpool(_refuse_if_busy, store, library.get(workspace_id), "replace")
    stored = await _store_upload(request, library, store, settings, locks, workspace_id)
    return JSONResponse(_resource(request, stored))


def _wants_zip(request: Request) -> bool:
    accept = request.headers.get("accept", "").lower()
    return OCRD_ZIP in accept or "application/zip" in accept


@router.get(
    "/workspace/{workspace_id}",
    dependencies=[Depends(require(Role.READER))],
    summary="The workspace: JSON metadata, or the OCRD-ZIP with Accept: application/vnd.ocrd+zip",
    responses={200: {"content": {OCRD_ZIP: {}}}, **_WORKSPACE_ANSWERS},
)
def get_workspace(workspace_id: WorkspaceIdPath, request: Request, library: LibraryDep) -> Any:
    stored = _lookup(library, workspace_id)
    if not _wants_zip(request):
        return JSONResponse(_resource(request, stored))
    library.uploads.mkdir(parents=True, exist_ok=True)
    bag = library.uploads / f"download-{uuid.uuid4()}.ocrd.zip"
    pack_workspace(stored.mets_path, bag, identifier=stored.ocrd_identifier)
    return FileResponse(
        bag,
        media_type=OCRD_ZIP,
        filename=f"{stored.id}.ocrd.zip",
        background=BackgroundTask(bag.unlink, missing_ok=True),
    )


@router.delete(
    "/workspace/{workspace_id}",
    dependencies=[Depends(require(Role.ADMIN))],
    summary="Delete a workspace (its id answers 410 afterwards)",
    responses={409: {"description": "Workspace has unfinished jobs"}, **_WORKSPACE_ANSWERS},
)
def delete_workspace(
    workspace_id: WorkspaceIdPath,
    request: Request,
    library: LibraryDep,
    store: StoreDep,
    locks: WorkspaceLocksDep,
) -> JSONResponse:
    stored = _lookup(library, workspace_id)
    with locks.hold(library.directory(workspace_id)):  # no job submitted between check, delete
        _refuse_if_busy(store, stored, "delete")
        try:
            library.delete(workspace_id)
        except WorkspaceGoneError as gone:
            raise HTTPException(status_code=410, detail=str(gone)) from None
    return JSONResponse(_resource(request, stored))
