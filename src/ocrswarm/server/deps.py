"""What routes get from the application: settings, store, engine service, safe paths."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from ocrswarm.engine.service import EngineService
from ocrswarm.engine.store import Store
from ocrswarm.errors import NotFoundError, UnsafeInputError, UsageError
from ocrswarm.server.metscache import WorkspaceCache
from ocrswarm.server.results import ResultSender
from ocrswarm.server.settings import ServerSettings
from ocrswarm.server.workspaces import WorkspaceLocks


def get_settings(request: Request) -> ServerSettings:
    settings: ServerSettings = request.app.state.settings
    return settings


def get_service(request: Request) -> EngineService:
    service: EngineService = request.app.state.service
    return service


def get_store(request: Request) -> Store:
    return get_service(request).store


def mets_inside_data_roots(path: str, roots: tuple[Path, ...]) -> Path:
    """The real path of the METS file `path`, which must lie inside one of `roots`.

    Symlinks and `..` are resolved first, so neither leads out: `/etc/passwd`, a
    `../../x/mets.xml` or a link to elsewhere is an UnsafeInputError (403) naming why.
    """
    if not path or "\x00" in path:
        raise UsageError("the METS path is empty or not a valid path")
    given = Path(path)
    if not given.is_absolute():
        raise UnsafeInputError(f"METS path {path!r} must be absolute (inside the data roots)")
    real = Path(os.path.realpath(given))
    for root in roots:
        if real.is_relative_to(os.path.realpath(root)):
            try:
                exists = real.is_file()
            except OSError as error:
                raise UsageError(f"METS path {path}: {error.strerror}") from None
            if not exists:
                raise NotFoundError(f"METS file {path} does not exist")
            return real
    shown = ", ".join(str(root) for root in roots)
    raise UnsafeInputError(
        f"METS path {path} resolves to {real}, outside the server's data roots ({shown}); refused"
    )


UploadedWorkspaces = Callable[[str], Path | None]


def get_uploaded_workspaces(request: Request) -> UploadedWorkspaces:
    """The METS path of a workspace uploaded through /workspace, by the id that route gave
    it (None: no such upload). The workspace routes own the uploads; they are asked lazily,
    as they import this module."""
    from ocrswarm.server.routes import workspace as uploads

    library_of = getattr(uploads, "get_library", None)

    def find(workspace_id: str) -> Path | None:
        if library_of is None:
            return None
        try:
            path: Path = library_of(request).get(workspace_id).mets_path
        except NotFoundError:
            return None
        return path

    return find


def get_results(request: Request) -> ResultSender:
    sender: ResultSender = request.app.state.results
    return sender


def get_workspace_cache(request: Request) -> WorkspaceCache:
    cache: WorkspaceCache = request.app.state.workspace_cache
    return cache


def get_workspace_locks(request: Request) -> WorkspaceLocks:
    locks: WorkspaceLocks = request.app.state.workspace_locks
    return locks


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
ServiceDep = Annotated[EngineService, Depends(get_service)]
StoreDep = Annotated[Store, Depends(get_store)]
ResultsDep = Annotated[ResultSender, Depends(get_results)]
WorkspaceCacheDep = Annotated[WorkspaceCache, Depends(get_workspace_cache)]
UploadedWorkspacesDep = Annotated[UploadedWorkspaces, Depends(get_uploaded_workspaces)]
WorkspaceLocksDep = Annotated[WorkspaceLocks, Depends(get_workspace_locks)]
