"""The one place where the engine's file references meet the processor interface.

A claimed task names its input files as (fileGrp, ID, MIME type, href relative to the
workspace), so that a worker on another machine needs no METS; a processor wants paths.
This module turns the first into a `PageJob` (hrefs resolved safely, one file per input
fileGrp as the standalone processor CLI chooses them) and a processor's `OutputFile`s back
into file references for the store.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Protocol

from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.workspace import resolve_href
from ocrswarm.processors.processor import InputFile, PageJob


class FileLike(Protocol):
    """What the engine knows about a file: enough to find it without the METS."""

    @property
    def file_grp(self) -> str: ...
    @property
    def file_id(self) -> str: ...
    @property
    def mimetype(self) -> str: ...
    @property
    def href(self) -> str: ...


def page_job(
    workspace_dir: Path, page_id: str, inputs: Iterable[FileLike], output_file_grps: Sequence[str]
) -> PageJob:
    """The PageJob of one page: per input fileGrp, in order, its PAGE-XML file if it has one,
    else its first file. An href that leaves the workspace or is a URL is a FormatError."""
    directory = Path(workspace_dir)
    real_directory = _real_directory(directory)
    chosen: dict[str, FileLike] = {}
    for file in inputs:
        current = chosen.get(file.file_grp)
        if current is None or (
            file.mimetype == MIMETYPE_PAGE and current.mimetype != MIMETYPE_PAGE
        ):
            chosen[file.file_grp] = file
    files = tuple(
        InputFile(
            file.file_grp,
            file.file_id,
            file.mimetype,
            resolve_href(directory, file.href, real_directory=real_directory),
        )
        for file in chosen.values()
    )
    # Not durable file by file: the coordinator syncs the file system once per batch of
    # results before it records them as done (sync_filesystem below).
    return PageJob(directory, page_id, files, tuple(output_file_grps), durable=False)


@functools.lru_cache(maxsize=16)
def _real_directory(directory: Path) -> Path:
    """A workspace directory's realpath, looked up once per directory a worker serves."""
    return Path(os.path.realpath(directory))


def sync_filesystem(directory: Path) -> None:
    """Make everything written to the file system holding `directory` durable.

    One call makes a whole batch of page outputs durable, which is how the engine avoids an
    fsync per file: outputs are synced before their tasks are recorded as done, and before
    the METS that lists them is saved. Linux syncs only that file system (syncfs); elsewhere
    all of them.
    """
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        os.sync()
        return
    try:
        if _syncfs is None or _syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


def _load_syncfs() -> Callable[[int], int] | None:
    try:
        function: Callable[[int], int] = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    return function


_syncfs = _load_syncfs()
