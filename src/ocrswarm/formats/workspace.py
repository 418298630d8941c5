"""A workspace: a directory with a METS, and the files the METS points to.

The METS may come from anywhere (a bag uploaded by a stranger), so an href is never trusted:
`resolve` refuses any that leads outside the directory, by `..`, by an absolute path or
through a symlink, and never fetches a URL. Everything that reads or writes a workspace file
goes through `resolve` or `path_for_new_file`.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from urllib.parse import unquote, urlsplit

from ocrswarm.errors import FormatError, ImageError, MetsError, UnsafeInputError
from ocrswarm.formats.atomicfile import write_atomic
from ocrswarm.formats.images import (
    inspect_image,
    mimetype_for,
    require_single_page,
    suffix_for,
)
from ocrswarm.formats.mets import (
    MIMETYPE_PAGE,
    Mets,
    MetsFile,
    check_file_grp_name,
    check_id,
    is_url,
)
from ocrswarm.formats.metsstream import MetsAppender, NewFile, NewPage
from ocrswarm.formats.natsort import natural_key

METS_BASENAME = "mets.xml"
IMAGE_FILE_GRP = "OCR-D-IMG"  # where OCR-D keeps the page images, by convention
_SUFFIXES = {
    MIMETYPE_PAGE: ".xml",
    "application/alto+xml": ".xml",
    "text/plain": ".txt",
    "text/html": ".html",
    "application/json": ".json",
    "application/pdf": ".pdf",
}
_JAVA_FILE_URL = re.compile(r"^file:/[^/]")
_REMOTE_SCHEMES = ("http", "https")


class Workspace:
    """A METS (`mets`, saved at `mets_path`) and the directory its hrefs are relative to."""

    def __init__(self, directory: Path, mets: Mets, *, mets_path: Path | None = None) -> None:
        self.directory = directory.absolute()
        self.mets_path = mets_path.absolute() if mets_path else self.directory / METS_BASENAME
        self.mets = mets
        self.warnings: list[str] = []
        self._real_directory = Path(os.path.realpath(self.directory))

    @classmethod
    def open(cls, mets_path: Path) -> Workspace:
        """Open the METS at `mets_path`, or `mets.xml` inside it when it is a directory."""
        path = Path(mets_path)
        if path.is_dir():
            path = path / METS_BASENAME
        if not path.is_file():
            raise FormatError(f"no METS file at {path}")
        return cls(path.absolute().parent, Mets.read(path), mets_path=path)

    @classmethod
    def create(cls, directory: Path, *, identifier: str | None = None) -> Workspace:
        """Make `directory` a workspace with an empty METS (refused if it has one already)."""
        workspace = cls(Path(directory), Mets.empty(identifier))
        _refuse_existing(workspace.mets_path)
        workspace.directory.mkdir(parents=True, exist_ok=True)
        workspace.save()
        return workspace

    @classmethod
    def from_images(
        cls,
        source: Path,
        target: Path | None = None,
        *,
        file_grp: str = IMAGE_FILE_GRP,
        identifier: str | None = None,
    ) -> Workspace:
        """A workspace with one page per image of the folder `source`, in natural order
        (`create_from_images`, then opened)."""
        mets_path, warnings = create_from_images(
            source, target, file_grp=file_grp, identifier=identifier
        )
        workspace = cls.open(mets_path)
        workspace.warnings = warnings
        return workspace

    def resolve(self, file: MetsFile | str) -> Path:
        """The real path of a file or href, which must lie inside the workspace.

        Raises FormatError for a remote URL (never fetched) and UnsafeInputError for an href
        that leads outside the directory, symlinks resolved.
        """
        href = file.href if isinstance(file, MetsFile) else file
        return resolve_href(self.directory, href, real_directory=self._real_directory)

    def path_for_new_file(self, file_grp: str, file_id: str, suffix: str) -> tuple[Path, str]:
        """(absolute path, href relative to the METS) of a new `<file_grp>/<file_id><suffix>`."""
        check_file_grp_name(file_grp)
        check_id(file_id, "file ID")  # an xs:ID has no slash, so it is one path component
        if not re.fullmatch(r"(\.[A-Za-z0-9]+)*", suffix):
            raise MetsError(f"invalid file suffix {suffix!r}: expected something like '.xml'")
        name = f"{file_id}{suffix}"
        href = f"{file_grp}/{name}"
        return self.directory / file_grp / name, href

    def add_file(
        self,
        content: bytes,
        *,
        file_grp: str,
        file_id: str,
        mimetype: str,
        page_id: str | None = None,
        suffix: str | None = None,
        href: str | None = None,
        replace: bool = False,
    ) -> MetsFile:
        """Write `content` atomically and register it; the METS is saved by `save` later.

        The file goes to `href` when given (inside the workspace), else to
        `<file_grp>/<file_id><suffix>`, the suffix following the MIME type when omitted.
        """
        if href is None:
            chosen_suffix = suffix if suffix is not None else _suffix_for_mimetype(mimetype)
            path, href = self.path_for_new_file(file_grp, file_id, chosen_suffix)
        elif is_url(href):
            raise FormatError(f"cannot write to the URL {href!r}; give a relative href")
        else:
            path = self.resolve(href)
        self.mets.check_new_file(file_grp, file_id, href, mimetype, page_id, replace=replace)
        write_atomic(path, content)
        return self.mets.add_file(file_grp, file_id, href, mimetype, page_id, replace=replace)

    def save(self) -> None:
        self.mets.save(self.mets_path)

    def validate(self, *, check_files: bool = True) -> list[str]:
        """Every problem found, in words; empty means valid.

        Checks what `ocrd workspace validate` checks where it applies to the METS itself:
        mets.xsd, a unique identifier, files present, sane URLs, single-page images; and
        beyond it: hrefs relative and inside the workspace, every file on exactly one page,
        no fptr to a missing file. `check_files=False` skips everything that reads the disk
        except href resolution.
        """
        problems = [f"METS schema: {error}" for error in self.mets.validate_schema()]
        if self.mets.unique_identifier is None:
            problems.append(
                "METS has no unique identifier (mods:identifier of type purl, urn, doi or url)"
            )
        files = self.mets.files
        if not files:
            problems.append("METS lists no files")
        for page_id, file_id in self.mets.dangling_fptrs:
            problems.append(f"page {page_id!r} points to file {file_id!r}, which is not listed")
        for file in files:
            problems.extend(self._file_problems(file, check_files=check_files))
        return problems

    def _file_problems(self, file: MetsFile, *, check_files: bool) -> Iterator[str]:
        name = f"file {file.id!r} (fileGrp {file.file_grp!r})"
        if not file.mimetype:
            yield f"{name} has no MIMETYPE"
        pages = self.mets.pages_of_file(file.id)
        if not pages:
            yield f"{name} is on no page"
        elif len(pages) > 1:
            yield f"{name} is on several pages: {', '.join(pages)}"
        if not file.href:
            yield f"{name} has no href"
            return
        if file.is_url:
            scheme = file.href.split(":", 1)[0].lower()
            if _JAVA_FILE_URL.match(file.href):
                yield f"{name} has a malformed file URL {file.href!r} (file:/// expected)"
            elif scheme not in (*_REMOTE_SCHEMES, "file"):
                yield f"{name} has a URL with an unsupported scheme: {file.href!r}"
            if scheme != "file":
                return  # a remote reference: kept, never fetched, so nothing more to check
        elif PurePosixPath(file.href).is_absolute():
            yield f"{name} has an absolute href {file.href!r}; hrefs must be relative to the METS"
        try:
            path = self.resolve(file)
        except FormatError as error:
            yield f"{name}: {error}"
            return
        if not check_files:
            return
        if not path.is_file():
            yield f"{name}: {file.href!r} does not exist"
        elif file.mimetype.startswith("image/"):
            try:
                require_single_page(inspect_image(path), path)
            except FormatError as error:
                yield f"{name}: {error}"


def create_from_images(
    source: Path,
    target: Path | None = None,
    *,
    file_grp: str = IMAGE_FILE_GRP,
    identifier: str | None = None,
) -> tuple[Path, list[str]]:
    """Make a workspace with one page per image of the folder `source`, in natural order;
    (its METS path, warnings). The METS is written in one streamed pass, never held whole.

    Without `target` the METS is written into `source` and points at the images where they
    are; with it, the images are hard-linked (or copied) into `target/<file_grp>/`. Pages
    are `PHYS_0001`... (ORDER 1..n, LABEL the file stem), files `<file_grp>_0001`... A
    multi-page TIFF or an oversized image is refused; an unreadable one is registered
    anyway, with a note in the warnings, so that its page fails visibly later on.
    """
    source = Path(source).absolute()
    check_file_grp_name(file_grp)
    images = _list_images(source)
    directory = source if target is None else Path(target).absolute()
    in_place = directory == source
    mets_path = directory / METS_BASENAME
    _refuse_existing(mets_path)
    if not in_place:
        (directory / file_grp).mkdir(parents=True, exist_ok=True)
    real_directory = Path(os.path.realpath(directory))
    warnings: list[str] = []
    pages: list[NewPage] = []
    files: list[NewFile] = []
    for number, image in enumerate(images, start=1):
        mimetype = _inspect_new_image(image, warnings)
        if in_place:
            href = f"./{image.name}" if is_url(image.name) else image.name
            _require_inside(directory, href, real_directory)
        else:
            href = f"{file_grp}/{image.name}"
            _link_or_copy(image, directory / href)
        page_id = f"PHYS_{number:04d}"
        pages.append(NewPage(page_id, order=number, label=image.stem))
        files.append(NewFile(file_grp, f"{file_grp}_{number:04d}", mimetype, href, page_id))
    # Built beside the METS and renamed into place: an interrupted run leaves no METS.
    building = directory / f".{METS_BASENAME}.building"
    Mets.empty(identifier or f"urn:uuid:{uuid.uuid4()}").save(building)
    try:
        rejected = MetsAppender(building).add(files, pages=pages)
        if rejected:
            raise MetsError(f"cannot register {rejected[0].file_id}: {rejected[0].reason}")
        _refuse_existing(mets_path)
        os.replace(building, mets_path)
    finally:
        building.unlink(missing_ok=True)
    return mets_path, warnings


def _inspect_new_image(image: Path, warnings: list[str]) -> str:
    """The MIME type of an image to register; refuses multi-page and oversized images."""
    try:
        info = inspect_image(image)
    except UnsafeInputError:
        raise
    except ImageError as error:
        warnings.append(f"{error}; registered anyway, its page will fail")
        return mimetype_for(image) or "application/octet-stream"
    require_single_page(info, image)
    return info.mimetype


def _require_inside(directory: Path, href: str, real_directory: Path) -> None:
    try:
        resolve_href(directory, href, real_directory=real_directory)
    except UnsafeInputError as error:
        raise UnsafeInputError(
            f"{error}: the image is a symlink to elsewhere; "
            "pass a target directory to link or copy the images instead"
        ) from None


def _list_images(source: Path) -> list[Path]:
    """Image files in `source` (by suffix; hidden files skipped), in natural order."""
    if not source.is_dir():
        raise FormatError(f"{source} is not a directory")
    images = [
        path
        for path in source.iterdir()
        if not path.name.startswith(".") and mimetype_for(path) and not path.is_dir()
    ]
    if not images:
        raise FormatError(f"no images (TIFF, PNG, JPEG, JPEG 2000) in {source}")
    return sorted(images, key=lambda path: natural_key(path.name))


def _refuse_existing(mets_path: Path) -> None:
    if mets_path.exists():
        raise FormatError(f"{mets_path} already exists; refusing to overwrite a workspace")


def _link_or_copy(source: Path, destination: Path) -> None:
    """Hard-link (free, and the scan stays untouched), copying across file systems."""
    if destination.exists():
        if os.path.samefile(source, destination):
            return
        raise FormatError(f"{destination} already exists; refusing to overwrite it")
    try:
        # os.link does not follow a symlink on Linux; link the file it points to.
        os.link(os.path.realpath(source), destination)
    except OSError:
        try:
            shutil.copyfile(source, destination)
        except OSError as error:
            raise FormatError(
                f"cannot copy {source} to {destination}: {error.strerror or error}"
            ) from None


def resolve_href(directory: Path, href: str, *, real_directory: Path | None = None) -> Path:
    """The real path of an href relative to a workspace `directory`, which it must not leave.

    The one containment check for every href we follow (METS FLocat, PAGE imageFilename,
    AlternativeImage): FormatError for a remote URL (never fetched), UnsafeInputError for an
    href that leads outside the directory, symlinks resolved. `real_directory` is the
    directory's realpath when the caller has it already.
    """
    if not href:
        raise FormatError("empty href: the file has no location")
    path = _path_of_file_url(href) if is_url(href) else Path(href)
    candidate = path if path.is_absolute() else directory / path
    real = Path(os.path.realpath(candidate))
    if not real.is_relative_to(real_directory or Path(os.path.realpath(directory))):
        raise UnsafeInputError(f"href {href!r} leads outside the workspace {directory}; refused")
    return real


def _path_of_file_url(href: str) -> Path:
    parts = urlsplit(href)
    if parts.scheme.lower() != "file":
        raise FormatError(f"{href} is a remote file; ocrswarm does not fetch remote files")
    if parts.netloc not in ("", "localhost"):
        raise FormatError(f"{href} names another host; ocrswarm does not fetch remote files")
    return Path(unquote(parts.path))


def _suffix_for_mimetype(mimetype: str) -> str:
    suffix = suffix_for(mimetype) or _SUFFIXES.get(mimetype)
    if suffix is None:
        raise MetsError(f"no file suffix known for MIME type {mimetype!r}; pass one")
    return suffix
