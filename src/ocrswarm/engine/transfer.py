"""A worker's files over HTTP, for a machine without the shared data directory.

`ocrswarm worker --server URL --token T` keeps a local mirror of the workspaces it works
on: `fetch` downloads a page task's input files (and the images its PAGE-XML inputs point
to) from the server's `/workspace/{id}/files/{path}` into `<mirror>/<workspace id>/`, at
the same relative paths, and returns the lease with the mirror as its workspace directory,
so the processor runs as it would on the shared directory. Files already in the mirror
are revalidated with their ETag (a 304 costs no body). `push` uploads the files the
processor wrote, under the task's lease, before the worker records the task as done: the
server holds every output at its href before the store says SUCCESS.

Failures are `TransferError`s the worker turns into a failed attempt (the task is retried
later): a refused token (401/403) says so, a lease the server no longer knows is
`LeaseLostError` (the task is someone else's now), and an unreachable server is retried with
backoff before it is `ServerUnreachableError`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Any, NoReturn, TypeVar
from urllib.parse import quote, unquote, urlsplit

import httpx

from ocrswarm.engine.files import FileLike
from ocrswarm.engine.records import FileRef, TaskLease
from ocrswarm.errors import FormatError, OcrswarmError, UnsafeInputError
from ocrswarm.formats.atomicfile import atomic_writer
from ocrswarm.formats.mets import MIMETYPE_PAGE, is_url
from ocrswarm.formats.safexml import parse_xml
from ocrswarm.formats.workspace import resolve_href

LEASE_HEADER = "X-Ocrswarm-Lease"  # the server's files route reads the lease token here
DEFAULT_BACKOFF: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)  # waits between attempts
CHUNK_BYTES = 1024 * 1024
_RETRIED_STATUSES = frozenset({500, 502, 503, 504})
_ETAG_XATTR = "user.ocrswarm.etag"  # the server's ETag of a mirror file, for other processes
# Where PAGE-XML names other files of the workspace: the page image and derived images.
_PAGE_IMAGES = (
    "//*[local-name()='Page']/@imageFilename | //*[local-name()='AlternativeImage']/@filename"
)

T = TypeVar("T")


class TransferError(OcrswarmError):
    """A file could not be moved between a worker and the server."""


class TokenRejectedError(TransferError):
    """The server refused the worker's token (HTTP 401 or 403)."""


class LeaseLostError(TransferError):
    """The server no longer counts the worker's lease of the task (taken back, or done)."""


class ServerUnreachableError(TransferError):
    """The server did not answer, or answered with a server error, after every retry."""


class _Retry(Exception):
    """One attempt failed in a way another attempt may not."""


@dataclass(frozen=True, slots=True)
class RemoteFiles:
    """Where a worker without the shared directory gets its files. Plain values, so it can
    be handed to worker processes, each of which opens its own `FileTransfer`."""

    server_url: str
    token: str
    mirror: Path

    def open(self) -> FileTransfer:
        return FileTransfer(self.server_url, self.token, self.mirror)


class FileTransfer:
    """Fetches a task's inputs from the server into a local mirror and pushes its outputs
    back (see the module docstring). Thread-safe: worker threads may share one."""

    def __init__(
        self,
        server_url: str,
        token: str,
        mirror: Path,
        *,
        timeout: float = 60.0,
        backoff: Sequence[float] = DEFAULT_BACKOFF,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.mirror = Path(mirror).absolute()
        self._backoff = tuple(backoff)
        self._client = httpx.Client(
            base_url=self.server_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            follow_redirects=False,
            transport=transport,
        )
        self._etags: dict[Path, str] = {}  # mirror file → the server's ETag of its content
        self._lock = threading.Lock()

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> FileTransfer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def mirror_of(self, workspace_id: str) -> Path:
        """The local directory that stands in for the workspace `workspace_id`."""
        return self.mirror / workspace_id

    def check_token(self) -> None:
        """TokenRejectedError now, rather than a failed page later, if the server refuses
        the token (ServerUnreachableError if it does not answer)."""

        def attempt() -> None:
            response = self._client.get("/workers")
            if response.status_code != 200:
                self._refuse(response, "checking the token")

        self._retrying(attempt, "checking the token")

    def fetch(self, lease: TaskLease) -> TaskLease:
        """Download the task's input files (and the images its PAGE inputs name) into the
        mirror; the lease with the mirror as its workspace and workspace-relative hrefs."""
        directory, inputs = self.fetch_files(lease.workspace_id, lease.workspace_dir, lease.inputs)
        return replace(lease, workspace_dir=directory, inputs=inputs)

    def push(self, lease: TaskLease, outputs: Iterable[FileLike]) -> None:
        """Upload each output file (relative to the lease's workspace, i.e. the mirror
        `fetch` made) under the task's lease; returns once the server holds them all."""
        self.push_files(lease.workspace_id, lease.workspace_dir, lease.token, outputs)

    def fetch_files(
        self, workspace_id: str, workspace_dir: Path, inputs: Iterable[FileRef]
    ) -> tuple[Path, list[FileRef]]:
        """`fetch` for a task given by parts: the workspace's id and directory on the server
        and the input files; the mirror directory and the inputs relative to it."""
        directory = self.mirror_of(workspace_id)
        fetched: list[FileRef] = []
        for ref in inputs:
            if is_url(ref.href) and not ref.href.lower().startswith("file:"):
                fetched.append(ref)  # a remote file: the processor refuses it, as it would here
                continue
            relative = workspace_relative(workspace_dir, ref.href)
            self._download(workspace_id, directory, relative)
            if ref.mimetype == MIMETYPE_PAGE:
                for image in page_images(directory / relative):
                    image_relative = workspace_relative(workspace_dir, image)
                    self._download(workspace_id, directory, image_relative)
            fetched.append(replace(ref, href=relative))
        return directory, fetched

    def push_files(
        self, workspace_id: str, directory: Path, lease_token: str, outputs: Iterable[FileLike]
    ) -> None:
        """`push` for a task given by parts: its workspace's id, the mirror directory the
        outputs were written to, and the lease token."""
        for output in outputs:
            relative = workspace_relative(directory, output.href)
            self._upload(workspace_id, lease_token, relative, resolve_href(directory, relative))

    # --- one file --------------------------------------------------------------------------

    def _url(self, workspace_id: str, relative: str) -> str:
        return f"/workspace/{quote(workspace_id, safe='')}/files/{quote(relative)}"

    def _download(self, workspace_id: str, directory: Path, relative: str) -> None:
        target = resolve_href(directory, relative)
        known = self._known_etag(target)
        headers = {"If-None-Match": known} if known is not None else {}
        url = self._url(workspace_id, relative)

        def attempt() -> None:
            with self._client.stream("GET", url, headers=headers) as response:
                if response.status_code == 304:
                    return
                if response.status_code != 200:
                    response.read()
                    self._refuse(response, f"downloading {relative}")
                with atomic_writer(target, durable=False) as stream:
                    for chunk in response.iter_bytes(CHUNK_BYTES):
                        stream.write(chunk)
                etag = response.headers.get("etag")
            if etag is not None:
                self._remember_etag(target, etag)

        self._retrying(attempt, f"downloading {relative} of workspace {workspace_id}")

    def _upload(self, workspace_id: str, lease_token: str, relative: str, path: Path) -> None:
        url = self._url(workspace_id, relative)

        def attempt() -> None:
            size = path.stat().st_size
            response = self._client.put(
                url,
                content=_chunks(path),
                headers={
                    LEASE_HEADER: lease_token,
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(size),
                },
            )
            if response.status_code != 200:
                self._refuse(response, f"uploading {relative}")
            etag = response.json().get("etag")
            if isinstance(etag, str):
                self._remember_etag(path, etag)

        self._retrying(attempt, f"uploading {relative} of workspace {workspace_id}")

    def _known_etag(self, path: Path) -> str | None:
        """The server's ETag of the content `path` holds, if known: from this process's
        memory, else from the file's extended attribute (another worker process's)."""
        with self._lock:
            known = self._etags.get(path)
        if known is not None or not path.is_file():
            return known if path.is_file() else None
        try:
            return os.getxattr(path, _ETAG_XATTR).decode("ascii")
        except (OSError, UnicodeDecodeError):
            return None

    def _remember_etag(self, path: Path, etag: str) -> None:
        with self._lock:
            self._etags[path] = etag
        with contextlib.suppress(OSError, UnicodeEncodeError):  # no xattrs here: memory only
            os.setxattr(path, _ETAG_XATTR, etag.encode("ascii"))

    def _refuse(self, response: httpx.Response, what: str) -> NoReturn:
        """Raise for an answer that is not a success: _Retry for a passing server error."""
        status = response.status_code
        detail = _detail(response)
        if status in _RETRIED_STATUSES:
            raise _Retry(f"HTTP {status}: {detail}")
        if status in (401, 403):
            raise TokenRejectedError(
                f"{self.server_url} rejected the worker's token ({what}: HTTP {status}, "
                f"{detail}); check --token and that its role is worker or above"
            )
        if status == 409:
            raise LeaseLostError(f"{what}: {detail}")
        raise TransferError(f"{what} from {self.server_url} failed (HTTP {status}: {detail})")

    def _retrying(self, attempt: Callable[[], T], what: str) -> T:
        waits = (*self._backoff, None)
        problem = ""
        for wait in waits:
            try:
                return attempt()
            except _Retry as retry:
                problem = str(retry)
            except httpx.TransportError as error:
                problem = f"{type(error).__name__}: {error}"
            except OSError as error:
                raise TransferError(f"{what}: {error}") from error
            if wait is not None:
                time.sleep(wait)
        raise ServerUnreachableError(
            f"{what}: the server {self.server_url} did not answer after "
            f"{len(waits)} attempts ({problem})"
        )


def workspace_relative(workspace_dir: Path, href: str) -> str:
    """`href` as a normalised path relative to the workspace: a relative href as it is, an
    absolute path or `file:` URL inside `workspace_dir` (the server's path) made relative.
    UnsafeInputError for one that leads elsewhere, FormatError for a remote URL (both are
    bad data: trying again cannot help)."""
    if is_url(href):
        parts = urlsplit(href)
        if parts.scheme.lower() != "file" or parts.netloc not in ("", "localhost"):
            raise FormatError(f"{href} is a remote file; ocrswarm does not fetch remote files")
        href = unquote(parts.path)
    path = PurePosixPath(href)
    if path.is_absolute():
        base = PurePosixPath(workspace_dir.as_posix())
        if not path.is_relative_to(base):
            raise UnsafeInputError(f"href {href!r} lies outside the workspace {workspace_dir}")
        path = path.relative_to(base)
    if not path.parts or ".." in path.parts:
        raise UnsafeInputError(f"href {href!r} is not a path inside the workspace")
    return path.as_posix()


def page_images(page: Path) -> list[str]:
    """The hrefs of the images a PAGE-XML file names (page image, derived images)."""
    tree = parse_xml(page, what="PAGE-XML")
    found: Any = tree.xpath(_PAGE_IMAGES)
    hrefs = [str(href) for href in found]
    return list(dict.fromkeys(h for h in hrefs if not is_url(h) or h.lower().startswith("file:")))


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as stream:
        while chunk := stream.read(CHUNK_BYTES):
            yield chunk


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    return str(detail) if detail else response.text[:200] or response.reason_phrase
