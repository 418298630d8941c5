"""What both run endpoints share: finding the workspace, its pages and their input files,
and reporting the result when a job ends (callback URL, result queue)."""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ocrswarm.engine.records import FileRef, PageInputs
from ocrswarm.engine.service import EngineService
from ocrswarm.engine.store import Store
from ocrswarm.errors import NotFoundError, UsageError
from ocrswarm.formats.pageselect import select_pages
from ocrswarm.formats.workspace import Workspace
from ocrswarm.server.deps import UploadedWorkspaces, mets_inside_data_roots
from ocrswarm.server.metscache import WorkspaceCache
from ocrswarm.server.results import (
    Destination,
    PendingResult,
    ResultSender,
    Transport,
    check_queue_name,
)
from ocrswarm.server.settings import ServerSettings
from ocrswarm.server.workspaces import WorkspaceLocks

log = logging.getLogger(__name__)

RABBITMQ_MISSING = (
    "result_queue_name needs RabbitMQ ([queue] url in the server's configuration), which "
    "this server does not have; use callback_url, or poll the job"
)


@dataclass(frozen=True, slots=True)
class Target:
    """The workspace a request names, by `path_to_mets` or by `workspace_id`."""

    workspace_id: str
    mets_path: Path
    workspace: Workspace
    by_path: bool  # named by its METS path (the callback message then carries the path)
    requested_id: str | None = None  # the workspace id the request named


def find_target(
    store: Store,
    settings: ServerSettings,
    cache: WorkspaceCache,
    *,
    path_to_mets: str | None,
    workspace_id: str | None,
    uploaded: UploadedWorkspaces = lambda _id: None,
) -> Target:
    """The workspace of a request: exactly one of a METS path (inside the data roots) or
    a workspace id (of an uploaded workspace, or the store's own)."""
    if (path_to_mets is None) == (workspace_id is None):
        raise UsageError("give exactly one of path_to_mets (mets_path) and workspace_id")
    if path_to_mets is not None:
        mets_path = mets_inside_data_roots(path_to_mets, settings.roots)
        return Target(cache.workspace_id(store, mets_path), mets_path, cache.open(mets_path), True)
    assert workspace_id is not None
    upload = uploaded(workspace_id)
    if upload is not None:
        store_id = cache.workspace_id(store, upload)
    else:
        store_id, upload = workspace_id, store.workspace(workspace_id).mets_path
    return Target(store_id, upload, cache.open(upload), False, workspace_id)


@contextmanager
def held_target(
    store: Store,
    settings: ServerSettings,
    cache: WorkspaceCache,
    locks: WorkspaceLocks,
    *,
    path_to_mets: str | None,
    workspace_id: str | None,
    uploaded: UploadedWorkspaces = lambda _id: None,
) -> Iterator[Target]:
    """`find_target`, with the workspace's lock held until the block ends: submit the job in
    the block. A replacement or deletion of the workspace waits for it, and then finds the
    job unfinished (409); one under way is waited for, and the block sees the new workspace."""
    directory = _workspace_directory(store, path_to_mets, workspace_id, uploaded)
    # without a directory find_target says what is wrong with the request
    with locks.hold(directory) if directory is not None else nullcontext():
        yield find_target(
            store,
            settings,
            cache,
            path_to_mets=path_to_mets,
            workspace_id=workspace_id,
            uploaded=uploaded,
        )


def _workspace_directory(
    store: Store,
    path_to_mets: str | None,
    workspace_id: str | None,
    uploaded: UploadedWorkspaces,
) -> Path | None:
    """The directory of the workspace a request names, found without reading anything in it
    (a replacement may be under way); None when the request names none."""
    if path_to_mets is not None:
        if workspace_id is not None or not path_to_mets or "\x00" in path_to_mets:
            return None
        return Path(os.path.realpath(path_to_mets)).parent
    if workspace_id is None:
        return None
    upload = uploaded(workspace_id)
    if upload is not None:
        return upload.parent
    try:
        return store.workspace(workspace_id).directory
    except NotFoundError:
        return None


def page_inputs(
    workspace: Workspace,
    page_selection: str | None,
    file_grps: Sequence[str],
    *,
    keep_empty: bool = False,
) -> list[PageInputs]:
    """The selected pages (OCR-D page_id syntax) with their files in `file_grps`; pages
    without any are left out unless `keep_empty` (their input comes from another job)."""
    mets = workspace.mets
    pages = []
    for page_id in select_pages(page_selection, mets.page_ids):
        files = [
            FileRef(grp, file.id, file.mimetype, file.href, page_id)
            for grp in file_grps
            for file in mets.find_files(file_grp=grp, page_id=page_id)
        ]
        if files or keep_empty:
            pages.append(PageInputs(page_id, files))
    if not pages:
        shown = ", ".join(file_grps) or "no fileGrp"
        raise UsageError(f"none of the selected pages has a file in {shown}; nothing to do")
    return pages


def require_file_grps(
    workspace: Workspace, wanted: Sequence[str], produced_elsewhere: Collection[str] = ()
) -> None:
    """Every input fileGrp is in the METS (or made by a job this one depends on)."""
    present = set(workspace.mets.file_groups)
    missing = [grp for grp in wanted if grp not in present and grp not in produced_elsewhere]
    if missing:
        have = ", ".join(sorted(present)) or "none"
        raise UsageError(
            f"input fileGrp {', '.join(missing)} is not in {workspace.mets_path} "
            f"(its fileGrps: {have})"
        )


def check_callback_url(url: str | None) -> None:
    """Only absolute http and https URLs can be called back."""
    if url is None:
        return
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise UsageError(f"callback_url {url!r} is not an http or https URL")


def check_result_queue(sender: ResultSender, name: str | None) -> None:
    """A result queue needs RabbitMQ configured, and a name it accepts."""
    if name is None:
        return
    if not sender.accepts_queues:
        raise UsageError(RABBITMQ_MISSING)
    check_queue_name(name)


def report_when_finished(
    service: EngineService,
    sender: ResultSender,
    target: Target,
    job_id: str,
    *,
    workflow: bool,
    callback_url: str | None = None,
    result_queue: str | None = None,
) -> None:
    """Send `{job_id, state, path_to_mets|workspace_id}` to the callback URL and the result
    queue once the job has ended (promised on disk first, so a restart does not lose it)."""
    destinations = []
    if callback_url is not None:
        destinations.append(Destination(Transport.CALLBACK, callback_url))
    if result_queue is not None:
        destinations.append(Destination(Transport.QUEUE, result_queue))
    if not destinations:
        return
    where = (
        {"path_to_mets": str(target.mets_path)}
        if target.by_path
        else {"workspace_id": target.requested_id or target.workspace_id}
    )
    promise = PendingResult(job_id, workflow, where, tuple(destinations))
    sender.pending.add(promise)
    keep_promise(service, sender, promise)


def keep_promise(service: EngineService, sender: ResultSender, promise: PendingResult) -> None:
    """Report the promised result when its job has finished (and its outputs are in the METS)."""
    service.on_finished(
        promise.job_id,
        lambda _job_id, state: sender.report(promise, state),
        workflow=promise.workflow,
    )


def keep_promises(service: EngineService, sender: ResultSender) -> None:
    """At start: report the results still owed when their jobs finish; forget those whose
    job no longer exists (they would otherwise be owed for ever)."""
    promises = sender.pending.entries()
    known = service.settled_states(
        [p.job_id for p in promises if not p.workflow], [p.job_id for p in promises if p.workflow]
    )
    for promise in promises:
        if promise.job_id in known:
            keep_promise(service, sender, promise)
        else:
            log.warning("job %s no longer exists: its result is not owed", promise.job_id)
            sender.pending.forget(promise.job_id)
