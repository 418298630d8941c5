"""The FastAPI application: routers, error handlers, and the engine's life with the app's.

`create_app(settings)` builds everything from the settings; the lifespan starts the engine
service (and the result sender) when the server starts and stops them gracefully —
leases given back, METS flushed — when it stops.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool

from ocrswarm import __version__
from ocrswarm.engine.coordinator import CoordinatorOptions
from ocrswarm.engine.processlock import exclusive_lock
from ocrswarm.engine.service import EngineService
from ocrswarm.engine.store import Store
from ocrswarm.errors import UsageError
from ocrswarm.server.auth import IpAllowlist, Role, require
from ocrswarm.server.errors import install_error_handlers
from ocrswarm.server.graceful import stopping_event
from ocrswarm.server.limits import RequestSizeLimit
from ocrswarm.server.metscache import WorkspaceCache
from ocrswarm.server.results import PendingResults, ResultSender
from ocrswarm.server.routes import (
    discovery,
    files,
    jobs,
    observe,
    processing,
    workers,
    workflow,
    workspace,
)
from ocrswarm.server.schemas import ErrorBody
from ocrswarm.server.settings import ServerSettings
from ocrswarm.server.submission import keep_promises
from ocrswarm.server.workspaces import WorkspaceLocks

ROUTERS = (discovery, processing, workflow, workspace, files, jobs, workers, observe)

# The error answers every route may give, declared in the published OpenAPI document (a
# route's own declaration of a status wins). 422 replaces FastAPI's list-only validation
# error: a bad workflow text or input fileGrp is a 422 with a message. The schema is given
# as JSON content, not as a model: FastAPI would file a model under a plain-text route's
# media type, but every error is JSON.
_ERROR_CONTENT = {"application/json": {"schema": ErrorBody.model_json_schema()}}
ERROR_ANSWERS: dict[int | str, dict[str, Any]] = {
    status: {"description": description, "content": _ERROR_CONTENT}
    for status, description in (
        (400, "Invalid request (e.g. a parameter)"),
        (401, "No token, or an unknown one"),
        (403, "Forbidden (role, address or path)"),
        (404, "Not found"),
        (422, "Invalid request body or query"),
    )
}


def create_app(settings: ServerSettings) -> FastAPI:
    """The OCR-D Web API on an engine whose state lives in `settings.data_dir`."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lock = settings.data_dir / "server.lock"
        with exclusive_lock(lock, lambda holder: _another_server(holder, settings.data_dir)):
            store = Store(settings.database_url)
            service = EngineService(
                store, CoordinatorOptions(workers=settings.workers), queue_url=settings.queue_url
            )
            results = ResultSender(
                PendingResults(settings.data_dir / "results.json"), amqp_url=settings.queue_url
            )
            await run_in_threadpool(service.start)
            results.start()
            await run_in_threadpool(keep_promises, service, results)
            app.state.service = service
            app.state.results = results
            try:
                yield
            finally:
                await run_in_threadpool(service.stop)
                results.stop()
                store.close()

    app = FastAPI(
        title="ocrswarm: the OCR-D Web API",
        version=__version__,
        description="OCR-D processing, workflows and workspaces on the ocrswarm engine.",
        lifespan=lifespan,
        openapi_url=None,  # served below, behind a token like every other route
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.workspace_cache = WorkspaceCache()
    app.state.workspace_locks = WorkspaceLocks()  # submissions vs. replacing a workspace
    stopping_event(app)  # set by GracefulServer on SIGTERM; live streams end on it
    install_error_handlers(app)
    # The last added runs first: the allowlist before anything reads a byte of the body.
    app.add_middleware(
        RequestSizeLimit,
        max_request_bytes=settings.max_request_bytes,
        max_upload_bytes=settings.max_upload_bytes,
    )
    app.add_middleware(IpAllowlist, allow=settings.allow, trusted_proxies=settings.trusted_proxies)
    for module in ROUTERS:
        app.include_router(module.router, responses=ERROR_ANSWERS)
    app.include_router(_documentation(app))
    return app


def _another_server(holder: str, data_dir: Path) -> UsageError:
    """One server per data directory: its engine takes back every lease at start."""
    return UsageError(f"another ocrswarm serve ({holder}) uses the data directory {data_dir}")


def _documentation(app: FastAPI) -> APIRouter:
    """The OpenAPI document and its two viewers, for readers and up."""
    router = APIRouter(dependencies=[Depends(require(Role.READER))], include_in_schema=False)

    @router.get("/openapi.json")
    def openapi() -> JSONResponse:
        return JSONResponse(app.openapi())

    @router.get("/docs")
    def swagger() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title=app.title)

    @router.get("/redoc")
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url="/openapi.json", title=app.title)

    return router
