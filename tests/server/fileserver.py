"""The workspace files routes on real HTTP over a real store, with page tasks the test leases.

A full `ocrswarm serve` runs its own workers, which would take every task before a test
could hold its lease; this app has the files routes (and the size limit, the error
handlers and the tokens) over a store the test drives itself, as a remote worker would.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import uvicorn
from fastapi import FastAPI

from ocrswarm.engine.records import TaskLease
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workflow import parse_workflow
from ocrswarm.formats.workspace import Workspace
from ocrswarm.server.auth import token_digest
from ocrswarm.server.errors import install_error_handlers
from ocrswarm.server.limits import RequestSizeLimit
from ocrswarm.server.routes import files, workers
from ocrswarm.server.settings import ServerSettings, TokenEntry
from ocrswarm.server.submission import page_inputs
from tests.render import render_page
from tests.server.conftest import free_port
from tests.server.servers import TOKENS

TWO_STEPS = "dummy -I OCR-D-IMG -O OCR-D-A\ndummy -I OCR-D-A -O OCR-D-B\n"
MAX_FILE_BYTES = 64 * 1024


@dataclass
class FileServer:
    """The app on loopback, its store, and a workflow job over a real workspace."""

    url: str
    store: Store
    workspace: Workspace
    workspace_id: str

    def lease(self, worker: str = "remote") -> TaskLease:
        leases = self.store.claim(worker, limit=1)
        assert leases, "no task is ready"
        return leases[0]


def files_app(store: Store, data_dir: Path) -> FastAPI:
    tokens = tuple(
        TokenEntry(f"{role.value}-user", token_digest(token), role)
        for role, token in TOKENS.items()
    )
    app = FastAPI()
    app.state.settings = ServerSettings(
        data_dir=data_dir, tokens=tokens, max_upload_bytes=MAX_FILE_BYTES
    )
    app.state.service = SimpleNamespace(store=store)
    install_error_handlers(app)
    app.add_middleware(RequestSizeLimit, max_request_bytes=1024, max_upload_bytes=MAX_FILE_BYTES)
    app.include_router(files.router)
    app.include_router(workers.router)  # FileTransfer.check_token asks it
    return app


@contextmanager
def serving(app: FastAPI) -> Iterator[str]:
    """Serve `app` with uvicorn on a free loopback port in a thread; its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def file_server(root: Path, pages: int = 2, workflow: str = TWO_STEPS) -> Iterator[FileServer]:
    """A workspace of `pages` rendered pages under `root`, `workflow` submitted over it in a
    fresh SQLite store, and the files routes serving it."""
    scans = root / "scans"
    scans.mkdir(parents=True)
    for n in range(1, pages + 1):
        render_page(scans / f"page_{n:04d}.png", [f"Page {n}"], size=(120, 160))
    workspace = Workspace.from_images(scans, root / "ws")
    store = Store(sqlite_url(root / "state.sqlite"))
    store.migrate()
    workspace_id = store.add_workspace(workspace.mets_path)
    store.submit_workflow(
        workspace_id,
        parse_workflow(workflow),
        page_inputs(workspace, None, ["OCR-D-IMG"]),
    )
    try:
        with serving(files_app(store, root / "data")) as url:
            yield FileServer(url, store, workspace, workspace_id)
    finally:
        store.close()
