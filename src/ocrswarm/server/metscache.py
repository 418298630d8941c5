"""Parsed METS files for the API, reused while the file on disk is unchanged, and the
store ids of the workspaces already registered."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from ocrswarm.engine.store import Store
from ocrswarm.formats.workspace import Workspace


class WorkspaceCache:
    """Parsed METS files, reused while the file on disk is unchanged (thread-safe)."""

    def __init__(self, size: int = 16) -> None:
        self._size = size
        self._lock = threading.Lock()
        self._entries: dict[Path, tuple[tuple[int, int, int], Workspace]] = {}
        self._ids: dict[Path, str] = {}

    def workspace_id(self, store: Store, mets_path: Path) -> str:
        """The store's id of the workspace of `mets_path`, registered on first use."""
        with self._lock:
            known = self._ids.get(mets_path)
        if known is None:
            known = store.add_workspace(mets_path)
            with self._lock:
                self._ids[mets_path] = known
        return known

    def open(self, mets_path: Path) -> Workspace:
        stat = os.stat(mets_path)
        key = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            entry = self._entries.get(mets_path)
            if entry is not None and entry[0] == key:
                return entry[1]
        workspace = Workspace.open(mets_path)
        with self._lock:
            if len(self._entries) >= self._size:
                self._entries.pop(next(iter(self._entries)))
            self._entries[mets_path] = (key, workspace)
        return workspace
