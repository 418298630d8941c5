"""Atomic writes: readers see the old or the new file, never a half-written one."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocrswarm.formats.atomicfile import write_atomic


def test_writes_new_file_and_creates_directories(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "file.bin"
    write_atomic(target, b"content")
    assert target.read_bytes() == b"content"
    assert [p.name for p in target.parent.iterdir()] == ["file.bin"]


def test_replaces_and_keeps_the_mode(tmp_path: Path) -> None:
    target = tmp_path / "file.txt"
    target.write_bytes(b"old")
    target.chmod(0o640)
    write_atomic(target, b"new")
    assert target.read_bytes() == b"new"
    assert target.stat().st_mode & 0o777 == 0o640


def test_failure_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "mets.xml"
    target.write_bytes(b"old complete document")

    def broken_replace(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, b"new document")
    assert target.read_bytes() == b"old complete document"
    assert [p.name for p in tmp_path.iterdir()] == ["mets.xml"]


@pytest.mark.parametrize(("durable", "expect_syncs"), [(True, True), (False, False)])
def test_durable_decides_about_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durable: bool, expect_syncs: bool
) -> None:
    syncs: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        syncs.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    target = tmp_path / "page.xml"
    write_atomic(target, b"<page/>", durable=durable)
    assert target.read_bytes() == b"<page/>"
    assert bool(syncs) is expect_syncs
    assert [p.name for p in tmp_path.iterdir()] == ["page.xml"]
