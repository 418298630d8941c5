"""One process at a time on a piece of state: `ocrswarm run` on an OUT, `ocrswarm serve` on
a data directory. Both take back every lease at start, which is right only when nobody else
works on the same store."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive_lock(path: Path, refuse: Callable[[str], Exception]) -> Iterator[None]:
    """Hold an exclusive lock on `path` (the OS drops it when the process dies, `kill -9`
    included); the file names the holder. When another process holds it, raise
    `refuse(holder)`."""
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            raise refuse(handle.read().strip() or "another process") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
