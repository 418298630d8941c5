"""Uploaded workspaces on disk: create, replace, delete (with a tombstone), find.

Layout under the server's data directory:

    workspaces/<id>/                 the unpacked payload of the bag (mets.xml and its files)
    workspaces/<id>/.ocrswarm.json   what the bag said (METS name, Ocrd-Identifier)
    workspaces/.deleted/<id>         a tombstone: the id existed and was deleted (410)
    workspaces/.<id>.<…>             staging and trash beside the real ones (same file system)
    uploads/                         request bodies while they arrive

An id is a bag's name in URLs, so it is restricted to letters, digits, `.`, `_` and `-`,
starting with a letter or digit (no hidden names, no path separators). A new workspace is
unpacked beside the old one and verified before a rename swaps it in, so a failed
replacement leaves the old workspace untouched. Swaps, deletions and lookups of one library
are serialised by a lock (so no lookup falls between the two renames of a swap); the
unpacking itself runs outside it.

`WorkspaceLocks` orders a workspace's replacement or deletion against job submissions on
it: each holds the workspace directory's lock from its check (no unfinished job; the METS
read) to its act (the swap; the job written), so a job is never submitted between the
check and the swap of a replacement, to run on a workspace that is being exchanged.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
import uuid
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ocrswarm.errors import BagError, NotFoundError, UsageError
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.ocrdzip import ZipLimits, unpack_bag

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_META = ".ocrswarm.json"
_TOMBSTONES = ".deleted"
_MAX_BAG_INFO_BYTES = 64 * 1024


class WorkspaceGoneError(NotFoundError):
    """The workspace existed and was deleted (HTTP 410)."""


@dataclass(frozen=True, slots=True)
class StoredWorkspace:
    """One uploaded workspace: its id, where its METS is, what its bag called it."""

    id: str
    mets_path: Path
    ocrd_identifier: str | None


def check_workspace_id(workspace_id: str) -> str:
    """`workspace_id` if it is a safe name for a directory and a URL, else UsageError."""
    if not _ID.fullmatch(workspace_id):
        raise UsageError(
            f"workspace id {workspace_id!r} is not allowed: use 1 to 128 letters, digits, "
            "'.', '_' or '-', starting with a letter or digit"
        )
    return workspace_id


def bag_identifier(bag: Path) -> str | None:
    """The Ocrd-Identifier of bag-info.txt of a bag that unpacked fine, if it has one."""
    try:
        with zipfile.ZipFile(bag) as archive, archive.open("bag-info.txt") as stream:
            text = stream.read(_MAX_BAG_INFO_BYTES).decode("utf-8", errors="replace")
    except (OSError, KeyError, zipfile.BadZipFile):
        return None
    for line in text.splitlines():
        label, _, value = line.partition(":")
        if label.strip() == "Ocrd-Identifier" and value.strip():
            return value.strip()
    return None


class WorkspaceLocks:
    """One lock per workspace directory (its real path), made while someone holds or waits
    for it and forgotten afterwards (see the module docstring)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}  # directory -> lock, users

    @contextmanager
    def hold(self, directory: Path) -> Iterator[None]:
        """Hold the lock of `directory` for the block (waiting for whoever holds it)."""
        key = os.path.realpath(directory)
        with self._guard:
            lock, users = self._locks.get(key, (threading.Lock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)

    def users(self, directory: Path) -> int:
        """How many hold or wait for the lock of `directory` now."""
        with self._guard:
            return self._locks.get(os.path.realpath(directory), (None, 0))[1]


class WorkspaceLibrary:
    """The uploaded workspaces of one data directory (see the module docstring)."""

    def __init__(self, data_dir: Path, *, limits: ZipLimits | None = None) -> None:
        self.root = Path(data_dir) / "workspaces"
        self.uploads = Path(data_dir) / "uploads"
        self.limits = limits or ZipLimits()
        self._tombstones = self.root / _TOMBSTONES
        self._lock = threading.RLock()

    def new_upload_path(self) -> Path:
        """A fresh path under uploads/ for a request body to be written to."""
        self.uploads.mkdir(parents=True, exist_ok=True)
        return self.uploads / f"{uuid.uuid4()}.ocrd.zip"

    def ids(self) -> list[str]:
        """The ids of all workspaces, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if _ID.fullmatch(entry.name) and (entry / _META).is_file()
        )

    def remove_leftovers(self) -> None:
        """Delete what a killed server left: staged, trashed and half-received directories
        and files. Only while no request runs (at start), or it would take theirs."""
        if self.root.is_dir():
            for entry in self.root.iterdir():
                if entry.name.startswith(".") and entry != self._tombstones:
                    shutil.rmtree(entry, ignore_errors=True)
        if self.uploads.is_dir():
            for entry in self.uploads.iterdir():
                entry.unlink(missing_ok=True)

    def directory(self, workspace_id: str) -> Path:
        """Where the workspace `workspace_id` is (or would be) unpacked."""
        return self.root / check_workspace_id(workspace_id)

    def exists(self, workspace_id: str) -> bool:
        if not _ID.fullmatch(workspace_id):
            return False
        with self._lock:  # not in the moment of a swap
            return (self.root / workspace_id / _META).is_file()

    def get(self, workspace_id: str) -> StoredWorkspace:
        """The workspace `workspace_id`; WorkspaceGoneError if deleted, else NotFoundError."""
        with self._lock:
            if not self.exists(workspace_id):
                if _ID.fullmatch(workspace_id) and (self._tombstones / workspace_id).exists():
                    raise WorkspaceGoneError(f"workspace {workspace_id!r} was deleted")
                raise NotFoundError(f"no workspace with id {workspace_id!r}")
            directory = self.root / workspace_id
            try:
                meta = json.loads((directory / _META).read_text(encoding="utf-8"))
            except (OSError, ValueError) as error:
                raise NotFoundError(f"workspace {workspace_id!r} is unreadable: {error}") from None
        return StoredWorkspace(workspace_id, directory / meta["mets"], meta.get("ocrd_identifier"))

    def unpack(self, workspace_id: str, bag: Path) -> Path:
        """Unpack and verify `bag` beside the library's workspaces; the staged directory.

        Raises what `unpack_bag` raises (BagError, UnsafeInputError) with nothing left behind.
        """
        check_workspace_id(workspace_id)
        self.root.mkdir(parents=True, exist_ok=True)
        staged = self.root / f".{workspace_id}.{uuid.uuid4().hex}.new"
        try:
            mets = unpack_bag(bag, staged, limits=self.limits)
            meta = {"mets": mets.name, "ocrd_identifier": bag_identifier(bag)}
            write_atomic(staged / _META, json.dumps(meta).encode("utf-8"))
        except BaseException:
            shutil.rmtree(staged, ignore_errors=True)
            raise
        return staged

    def install(self, workspace_id: str, staged: Path) -> StoredWorkspace:
        """Swap the staged directory in as `workspace_id`, replacing any old one."""
        target = self.root / workspace_id
        trash = self.root / f".{workspace_id}.{uuid.uuid4().hex}.old"
        with self._lock:
            try:
                if target.exists():
                    os.rename(target, trash)
                os.rename(staged, target)
            except OSError as error:
                if trash.exists() and not target.exists():
                    os.rename(trash, target)
                shutil.rmtree(staged, ignore_errors=True)
                raise BagError(f"cannot install workspace {workspace_id!r}: {error}") from None
            (self._tombstones / workspace_id).unlink(missing_ok=True)
        shutil.rmtree(trash, ignore_errors=True)
        return self.get(workspace_id)

    def delete(self, workspace_id: str) -> StoredWorkspace:
        """Delete `workspace_id`, leaving a tombstone; what it was."""
        with self._lock:
            stored = self.get(workspace_id)
            self._tombstones.mkdir(parents=True, exist_ok=True)
            write_atomic(self._tombstones / workspace_id, b"")
            trash = self.root / f".{workspace_id}.{uuid.uuid4().hex}.deleted"
            os.rename(self.root / workspace_id, trash)
        shutil.rmtree(trash, ignore_errors=True)
        return stored
