"""What routes get from the application: settings, store, engine service, safe paths."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from fastapi import Depends, Request

from ocrswarm.engine.service import EngineService
from ocrswarm.engine.store import Store
from ocrswarm.errors import NotFoundError, UnsafeInputError, UsageError
from ocrswarm.server.callbacks import CallbackSender
from ocrswarm.server.metscache import WorkspaceCache
from ocrswarm.server.settings import ServerSettings


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
            if not real.is_file():
                raise NotFoundError(f"METS file {path} does not exist")
            return real
    shown = ", ".join(str(root) for root in roots)
    raise UnsafeInputError(
        f"METS path {path} resolves to {real}, outside the server's data roots ({shown}); refused"
    )


def get_callbacks(request: Request) -> CallbackSender:
    sender: CallbackSender = request.app.state.callbacks
    return sender


def get_workspace_cache(request: Request) -> WorkspaceCache:
    cache: WorkspaceCache = request.app.state.workspace_cache
    return cache


SettingsDep = Annotated[ServerSettings, Depends(get_settings)]
ServiceDep = Annotated[EngineService, Depends(get_service)]
StoreDep = Annotated[Store, Depends(get_store)]
CallbacksDep = Annotated[CallbackSender, Depends(get_callbacks)]
WorkspaceCacheDep = Annotated[WorkspaceCache, Depends(get_workspace_cache)]
