"""Turn what the user gives `ocrswarm run` into the workspace the run works in.

INPUT is a folder of images, a METS file (or a folder holding `mets.xml`, or an unzipped
bag), or an OCRD-ZIP; OUT becomes an OCR-D workspace with `OUT/mets.xml`. A new OUT is
built in a hidden directory beside it and renamed into place only when complete, so an
interrupted preparation leaves nothing half made. OUT remembers its INPUT in
`OUT/.ocrswarm/source.json`: the same command run again finds the workspace it made and
continues there. A METS whose directory is OUT is worked on in place.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from ocrswarm.errors import FormatError, UnsafeInputError, UsageError
from ocrswarm.formats.mets import Mets
from ocrswarm.formats.ocrdzip import unpack_bag
from ocrswarm.formats.workspace import METS_BASENAME, Workspace, create_from_images

STATE_DIR = ".ocrswarm"
_SOURCE_FILE = "source.json"


class InputKind(StrEnum):
    IMAGES = "images"
    METS = "mets"
    OCRD_ZIP = "ocrd-zip"


@dataclass(frozen=True, slots=True)
class RunInput:
    """What INPUT is: a folder of images, a METS file or an OCRD-ZIP (absolute path)."""

    kind: InputKind
    path: Path

    @classmethod
    def of(cls, given: Path) -> RunInput:
        path = Path(given).absolute()
        if path.is_dir():
            if (path / METS_BASENAME).is_file():
                return cls(InputKind.METS, path / METS_BASENAME)
            if (path / "bagit.txt").is_file() and (path / "data" / METS_BASENAME).is_file():
                return cls(InputKind.METS, path / "data" / METS_BASENAME)
            return cls(InputKind.IMAGES, path)
        if path.is_file():
            if zipfile.is_zipfile(path):
                return cls(InputKind.OCRD_ZIP, path)
            return cls(InputKind.METS, path)
        raise UsageError(f"input {given} does not exist")

    def default_output(self) -> Path | None:
        """Where the run goes without -o: next to a METS, in place; otherwise nowhere."""
        return self.path.parent if self.kind == InputKind.METS else None


@dataclass(slots=True)
class PreparedWorkspace:
    """OUT, ready: its METS (not read here; a run streams it) and how it came about."""

    mets_path: Path
    created: bool  # False when OUT was made by an earlier run of the same INPUT, or in place
    warnings: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.mets_path.parent

    @property
    def state_dir(self) -> Path:
        return self.directory / STATE_DIR


def prepare_workspace(source: RunInput, output: Path) -> PreparedWorkspace:
    """The workspace OUT for `source`: made now, found from an earlier run, or in place."""
    output = Path(output).absolute()
    mets_path = output / METS_BASENAME
    if source.kind == InputKind.METS and _same_file(source.path, mets_path):
        return PreparedWorkspace(mets_path, created=False)
    if mets_path.exists():
        recorded = _recorded_source(output)
        if recorded != str(source.path):
            raise UsageError(
                f"{output} already holds a workspace that was not made from {source.path}; "
                f"choose a new -o, or pass {mets_path} as INPUT to run on that workspace"
            )
        return PreparedWorkspace(mets_path, created=False)
    _require_usable_target(output)
    staging = Path(
        tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".preparing", dir=output.parent)
    )
    try:
        built = staging / "workspace"
        warnings = _build(source, built)
        state_dir = built / STATE_DIR
        state_dir.mkdir(exist_ok=True)
        record = {"source": str(source.path), "kind": str(source.kind)}
        (state_dir / _SOURCE_FILE).write_text(json.dumps(record, indent=1), encoding="utf-8")
        if output.exists():
            output.rmdir()  # checked empty above
        os.rename(built, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PreparedWorkspace(mets_path, created=True, warnings=warnings)


def _build(source: RunInput, target: Path) -> list[str]:
    if source.kind == InputKind.IMAGES:
        return create_from_images(source.path, target)[1]
    if source.kind == InputKind.OCRD_ZIP:
        mets_path = unpack_bag(source.path, target)
        if mets_path != target / METS_BASENAME:
            if mets_path.parent != target:
                raise FormatError(
                    f"{source.path}: its METS {mets_path.relative_to(target)} is not at the top "
                    "of the payload; unpack it and pass the METS file instead"
                )
            os.rename(mets_path, target / METS_BASENAME)
        return []
    return _copy_mets_workspace(source.path, target)


def _copy_mets_workspace(mets_path: Path, target: Path) -> list[str]:
    """A copy of the workspace of `mets_path`: the METS, and its local files hard-linked
    (or copied) at the same relative paths. URLs stay references; missing files stay listed
    (their pages fail visibly later)."""
    original = Workspace.open(mets_path)
    copy = Workspace(target, Mets.read(original.mets_path))
    real_source = Path(os.path.realpath(original.directory))
    warnings = []
    for file in original.mets.files:
        if file.is_url and not file.href.lower().startswith("file:"):
            continue
        try:
            path = original.resolve(file)
        except UnsafeInputError as error:
            raise UnsafeInputError(
                f"{error}; to run on this METS where it is, use -o {original.directory}"
            ) from None
        relative = path.relative_to(real_source).as_posix()
        if not path.is_file():
            warnings.append(f"file {file.id}: {file.href} does not exist; its page will fail")
            continue
        _link_or_copy(path, target / relative)
        if relative != file.href:
            copy.mets.set_href(file.id, relative)
    target.mkdir(parents=True, exist_ok=True)
    copy.save()
    return warnings


def _link_or_copy(source: Path, destination: Path) -> None:
    destination.parent.mkdir(parents=True, exist_ok=True)
    if destination.exists():
        return  # two METS entries for one file
    try:
        os.link(source, destination)
    except OSError:
        try:
            shutil.copyfile(source, destination)
        except OSError as error:
            raise FormatError(f"cannot copy {source} to {destination}: {error.strerror}") from None


def _recorded_source(output: Path) -> str | None:
    try:
        record = json.loads((output / STATE_DIR / _SOURCE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    source = record.get("source") if isinstance(record, dict) else None
    return source if isinstance(source, str) else None


def _require_usable_target(output: Path) -> None:
    if output.is_symlink() or (output.exists() and not output.is_dir()):
        raise UsageError(f"-o {output} exists and is not a directory")
    if output.is_dir() and any(output.iterdir()):
        raise UsageError(f"-o {output} is not empty and holds no workspace; choose a new one")
    output.parent.mkdir(parents=True, exist_ok=True)


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
