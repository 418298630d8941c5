"""OCRD-ZIP: pack a workspace into a BagIt bag, validate a bag, unpack one without trusting it.

An OCRD-ZIP (https://ocr-d.de/en/spec/ocrd_zip) is a zipped BagIt bag (RFC 8493): the workspace
under `data/` (its METS named by `Ocrd-Mets` in bag-info.txt, default `mets.xml`), `bagit.txt`,
`bag-info.txt`, `manifest-sha512.txt`, and never a `fetch.txt`.

Bags come from strangers, so unpacking assumes the worst. Member names are checked before
anything is written (no absolute paths, `..`, drive letters, backslashes, NUL, duplicates,
symlinks or other special files, encryption, exotic compression); the declared sizes must
pass caps on total size, file size, compression ratio and file count; and since headers can
lie, every member is held to its declared size while it is decompressed. The bag is extracted
into a temporary directory beside the target and renamed into place only once checksums and
METS have been verified: on any error nothing is left behind.

Validation is strict on what protects the data (checksums, a complete manifest, safe paths, no
fetch.txt, a parseable METS whose hrefs stay in the payload) and lenient on what real bags
do differently: the old profile identifier is accepted, missing optional bag-info fields and
a missing tag manifest are only warnings.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import stat
import tempfile
import uuid
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from fnmatch import fnmatchcase
from pathlib import Path

from ocrswarm import __version__
from ocrswarm.errors import BagError, FormatError, UnsafeInputError, UsageError
from ocrswarm.formats.mets import Mets, is_url
from ocrswarm.formats.safexml import MAX_XML_BYTES
from ocrswarm.formats.workspace import Workspace

# The identifier the OCR-D BagIt profile gives itself, and the older URL of the same profile.
# OCR-D core (3.13) still writes the older one and its `ocrd zip validate` accepts nothing
# else, so that is what we write by default; validation accepts both without complaint.
BAGIT_PROFILE_IDENTIFIER = "https://ocr-d.de/en/spec/bagit-profile.json"
LEGACY_BAGIT_PROFILE_IDENTIFIER = "https://ocr-d.github.io/bagit-profile.json"
_OCRD_PROFILES = (BAGIT_PROFILE_IDENTIFIER, LEGACY_BAGIT_PROFILE_IDENTIFIER)
DEFAULT_METS_BASENAME = "mets.xml"

_GIB = 1024**3
_MIB = 1024**2
_CHUNK = _MIB
_PAYLOAD = "data/"
_BAGIT_TXT = "bagit.txt"
_BAG_INFO = "bag-info.txt"
_MANIFEST = "manifest-sha512.txt"
_TAG_MANIFEST = "tagmanifest-sha512.txt"
_ANY_MANIFEST = re.compile(r"(tag)?manifest-[A-Za-z0-9]+\.txt")
# Tag files the OCR-D profile allows besides the BagIt ones (its Tag-Files-Allowed).
_ALLOWED_TAG_FILES = (
    "README.md",
    "Makefile",
    "build.sh",
    "sources.csv",
    "metadata/*.xml",
    "metadata/*.txt",
)
_MAX_TAG_FILE_BYTES = 64 * _MIB
_MANIFEST_LINE = re.compile(r"([0-9a-fA-F]{128})[ \t]+(.+)")
_DRIVE_LETTER = re.compile(r"[A-Za-z]:")
# Python's zipfile inflates these with bounded memory; bzip2 and lzma can expand one read
# of a few kilobytes into gigabytes before any cap is consulted, so they are refused.
_ACCEPTED_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})
# Already-compressed formats are stored as they are: deflating them again costs CPU for nothing.
_STORED_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".jp2", ".j2k", ".gif", ".webp", ".zip"})
_COMPRESSION_SAMPLE = 256 * 1024
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
# What zipfile raises for a damaged member (bad CRC, truncated or invalid deflate stream).
_ZIP_READ_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError, RuntimeError)


@dataclass(frozen=True, slots=True)
class ZipLimits:
    """Caps for an untrusted zip, checked on the declared sizes (members are held to those).

    The defaults admit big books and refuse zip bombs. The ratio is judged only past
    `ratio_grace_bytes`, because small files legitimately compress absurdly well; bags of
    uncompressed synthetic images (blank TIFFs deflate 1000-fold) need a higher `max_ratio`.
    """

    max_total_bytes: int = 16 * _GIB
    max_files: int = 100_000
    max_ratio: float = 200.0
    max_file_bytes: int = 4 * _GIB
    ratio_grace_bytes: int = _MIB


@dataclass
class BagReport:
    """What validating a bag found: errors make it unusable, warnings are what real bags lack."""

    bag: str
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    identifier: str | None = None
    profile_identifier: str | None = None
    mets_name: str = DEFAULT_METS_BASENAME
    payload_files: int = 0
    payload_bytes: int = 0
    unsafe: bool = False  # some error is hostile input (a path leaving the bag, a DTD)

    @property
    def ok(self) -> bool:
        return not self.errors

    def error(self, message: str, *, unsafe: bool = False) -> None:
        self.errors.append(message)
        self.unsafe = self.unsafe or unsafe

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def raise_for_errors(self) -> None:
        """Raise UnsafeInputError (hostile input) or BagError (damage) naming the errors."""
        if not self.errors:
            return
        shown = "; ".join(self.errors[:5])
        if len(self.errors) > 5:
            shown += f" (and {len(self.errors) - 5} more)"
        error_type = UnsafeInputError if self.unsafe else BagError
        raise error_type(f"{self.bag} is not a valid OCRD-ZIP: {shown}")


# --- paths ---------------------------------------------------------------------------------


def _bag_path(name: str) -> str:
    """The bag-relative POSIX path a zip member or manifest entry names, if it stays in the bag.

    Raises UnsafeInputError naming `name` and what is wrong with it; a directory's trailing
    slash is dropped.
    """
    if not name or name == "/":
        raise UnsafeInputError("'' is an empty path")
    if "\x00" in name:
        raise UnsafeInputError(f"{name!r} contains a NUL byte")
    if "\\" in name:
        raise UnsafeInputError(f"{name!r} contains a backslash")
    if name.startswith("/"):
        raise UnsafeInputError(f"{name!r} is an absolute path")
    if _DRIVE_LETTER.match(name):
        raise UnsafeInputError(f"{name!r} starts with a drive letter")
    parts = name.removesuffix("/").split("/")
    if ".." in parts:
        raise UnsafeInputError(f"{name!r} leaves the bag through '..'")
    if "" in parts or "." in parts:
        raise UnsafeInputError(f"{name!r} has an empty or '.' path component")
    return "/".join(parts)


def _payload_path(href: str, mets_dir: str) -> str:
    """The bag path of a local METS href (relative to the METS), refusing hrefs that leave data/."""
    if href.lower().startswith("file:"):
        raise UnsafeInputError(f"{href!r} is a file: URL; hrefs in a bag must be relative paths")
    if "\x00" in href or "\\" in href:
        raise UnsafeInputError(f"{href!r} contains a NUL byte or a backslash")
    if href.startswith("/") or _DRIVE_LETTER.match(href):
        raise UnsafeInputError(f"{href!r} is an absolute path; hrefs in a bag must be relative")
    path = posixpath.normpath(posixpath.join(mets_dir, href))
    if not path.startswith(_PAYLOAD):
        raise UnsafeInputError(f"{href!r} points outside the bag's payload directory data/")
    return path


def _is_remote(href: str) -> bool:
    """A URL kept as a reference (never fetched); a `file:` URL is a local path in disguise."""
    return is_url(href) and not href.lower().startswith("file:")


def _percent_decode(path: str) -> str:
    """Undo a manifest's escaping: RFC 8493 encodes only CR, LF and '%' in file paths."""
    return re.sub(r"%(0[AaDd]|25)", lambda match: chr(int(match[1], 16)), path)


def _percent_encode(path: str) -> str:
    return path.replace("%", "%25").replace("\n", "%0A").replace("\r", "%0D")


# --- reading a bag, zipped or not ----------------------------------------------------------


class _BagSource:
    """The files of a bag, listed and streamed; `problems` are hostile entries that were skipped."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.files: dict[str, int] = {}  # bag path -> size in bytes
        self.problems: list[str] = []
        self._digests: dict[str, str] = {}

    def chunks(self, path: str) -> Iterator[bytes]:
        raise NotImplementedError

    def sha512(self, path: str) -> str:
        if path not in self._digests:
            digest = hashlib.sha512()
            for chunk in self.chunks(path):
                digest.update(chunk)
            self._digests[path] = digest.hexdigest()
        return self._digests[path]

    def remember_sha512(self, path: str, hexdigest: str) -> None:
        """Record a digest computed while the file streamed elsewhere, so it is not read again."""
        self._digests[path] = hexdigest

    def read(self, path: str, limit: int) -> bytes:
        if self.files[path] > limit:
            raise BagError(f"{self.label}: {path} is larger than {limit} bytes")
        data = bytearray()
        for chunk in self.chunks(path):
            data += chunk
            if len(data) > limit:
                raise BagError(f"{self.label}: {path} is larger than {limit} bytes")
        return bytes(data)


class _ZipBag(_BagSource):
    """A zipped bag: members and their declared sizes checked up front, then every member
    held to its declared size while it is decompressed."""

    def __init__(self, archive: zipfile.ZipFile, label: str, limits: ZipLimits) -> None:
        super().__init__(label)
        self.directories: list[str] = []
        self._archive = archive
        self._limits = limits
        self._members: dict[str, zipfile.ZipInfo] = {}
        self._survey()

    def _survey(self) -> None:
        members = self._archive.infolist()
        if len(members) > self._limits.max_files:
            raise UnsafeInputError(
                f"{self.label} has {len(members)} members, more than the limit of "
                f"{self._limits.max_files}"
            )
        declared_total = 0
        seen: set[str] = set()
        for info in members:
            try:
                path = _bag_path(info.filename)
            except UnsafeInputError as error:
                self.problems.append(f"zip member {error}")
                continue
            if path in seen:
                self.problems.append(f"zip member {path!r} occurs more than once")
                continue
            seen.add(path)
            refusal = _member_refusal(info)
            if refusal:
                self.problems.append(f"zip member {path!r} {refusal}")
                continue
            if info.is_dir():
                self.directories.append(path)
                continue
            self._check_declared(path, info)
            declared_total += info.file_size
            if declared_total > self._limits.max_total_bytes:
                raise UnsafeInputError(
                    f"{self.label} declares more than {self._limits.max_total_bytes} bytes "
                    "uncompressed, the limit (zip bomb?)"
                )
            self._members[path] = info
            self.files[path] = info.file_size

    def _check_declared(self, path: str, info: zipfile.ZipInfo) -> None:
        limits = self._limits
        if info.file_size > limits.max_file_bytes:
            raise UnsafeInputError(
                f"{self.label}: zip member {path!r} declares {info.file_size} bytes, more than "
                f"the per-file limit of {limits.max_file_bytes}"
            )
        size = info.file_size
        if size > limits.ratio_grace_bytes and size > limits.max_ratio * max(info.compress_size, 1):
            ratio = size / max(info.compress_size, 1)
            raise UnsafeInputError(
                f"{self.label}: zip member {path!r} expands {ratio:.0f}-fold, more than the "
                f"limit of {limits.max_ratio:.0f} (zip bomb?)"
            )

    def chunks(self, path: str) -> Iterator[bytes]:
        info = self._members[path]
        produced = 0
        try:
            with self._archive.open(info) as member:
                while chunk := member.read(_CHUNK):
                    produced += len(chunk)
                    self._check_produced(path, info, produced)
                    yield chunk
        except _ZIP_READ_ERRORS as error:
            raise BagError(f"{self.label}: zip member {path!r} is corrupt: {error}") from error
        except OSError as error:
            raise BagError(f"{self.label}: cannot read zip member {path!r}: {error}") from error

    def _check_produced(self, path: str, info: zipfile.ZipInfo, produced: int) -> None:
        """Refuse a member the moment it yields more bytes than its header declared.

        That is the one check the streamed bytes need: the declared sizes already passed the
        caps on file size, total and ratio, so a member held to its declared size is held to
        them too, whatever the headers claimed and whatever zipfile does with them.
        """
        if produced > info.file_size:
            raise UnsafeInputError(
                f"{self.label}: zip member {path!r} decompresses to more than the "
                f"{info.file_size} bytes its header declares"
            )


def _member_refusal(info: zipfile.ZipInfo) -> str | None:
    """Why a zip member may not be extracted at all, or None."""
    file_type = stat.S_IFMT(info.external_attr >> 16)
    if file_type == stat.S_IFLNK:
        return "is a symbolic link"
    if file_type not in (0, stat.S_IFREG, stat.S_IFDIR):
        return "is a device, FIFO or socket"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in _ACCEPTED_COMPRESSION:
        return f"uses compression method {info.compress_type}; only stored and deflate are accepted"
    return None


class _DirectoryBag(_BagSource):
    """An unzipped bag on disk; symbolic links and special files are problems, never followed."""

    def __init__(self, root: Path) -> None:
        super().__init__(str(root))
        self._root = root
        for directory, subdirectories, names in os.walk(root, onerror=self._walk_error):
            for name in [*subdirectories, *names]:
                full = Path(directory, name)
                path = full.relative_to(root).as_posix()
                status = full.lstat()
                if stat.S_ISLNK(status.st_mode):
                    self.problems.append(f"{path} is a symbolic link; a bag holds regular files")
                elif stat.S_ISREG(status.st_mode):
                    self.files[path] = status.st_size
                elif not stat.S_ISDIR(status.st_mode):
                    self.problems.append(f"{path} is a device, FIFO or socket")

    def _walk_error(self, error: OSError) -> None:
        raise BagError(f"{self.label}: cannot list {error.filename}: {error.strerror}")

    def chunks(self, path: str) -> Iterator[bytes]:
        try:
            descriptor = os.open(self._root / path, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(descriptor, "rb") as stream:
                while chunk := stream.read(_CHUNK):
                    yield chunk
        except OSError as error:
            raise BagError(f"{self.label}: cannot read {path}: {error.strerror}") from error


@contextmanager
def _open_zip(bag: Path) -> Iterator[zipfile.ZipFile]:
    if not bag.is_file():
        raise BagError(f"{bag} does not exist or is not a file")
    try:
        archive = zipfile.ZipFile(bag)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as error:
        raise BagError(f"{bag} is not a readable zip file: {error}") from error
    with archive:
        yield archive


# --- validation ----------------------------------------------------------------------------


def validate_bag(bag: Path, *, limits: ZipLimits = ZipLimits()) -> BagReport:
    """Check an OCRD-ZIP (a .zip, or an unzipped bag directory) and report what is wrong.

    Nothing is written. Problems of the bag go into the report; only a bag that cannot be
    read at all (BagError) or that breaks `limits` (UnsafeInputError: reading stops) raises.
    """
    bag = Path(bag)
    if bag.is_dir():
        return _validate(_DirectoryBag(bag))
    with _open_zip(bag) as archive:
        return _validate(_ZipBag(archive, str(bag), limits))


def _validate(source: _BagSource) -> BagReport:
    report = BagReport(bag=source.label)
    for problem in source.problems:
        report.error(problem, unsafe=True)
    _check_bagit_txt(source, report)
    info = _check_bag_info(source, report)
    if "fetch.txt" in source.files:
        report.error("fetch.txt is present: an OCRD-ZIP must carry its files itself")
    payload = {path for path in source.files if path.startswith(_PAYLOAD)}
    report.payload_files = len(payload)
    report.payload_bytes = sum(source.files[path] for path in payload)
    _check_payload_manifest(source, report, payload)
    _check_tag_manifest(source, report)
    _check_tag_files(source, report)
    _check_payload_oxum(info, report)
    _check_mets(source, report, payload)
    return report


def _tag_fields(source: _BagSource, name: str, report: BagReport) -> dict[str, str]:
    """The `Label: value` fields of a tag file (continuation lines joined; first value wins)."""
    text = _tag_text(source, name, report)
    entries: list[list[str]] = []
    for number, line in enumerate(text.split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        if line[0] in " \t" and entries:
            entries[-1][1] += " " + line.strip()
            continue
        label, colon, value = line.partition(":")
        if not colon:
            report.error(f"{name} line {number} is not 'Label: value': {line[:80]!r}")
            continue
        entries.append([label.strip(), value.strip()])
    return {label: value for label, value in reversed(entries)}


def _tag_text(source: _BagSource, name: str, report: BagReport) -> str:
    try:
        return source.read(name, _MAX_TAG_FILE_BYTES).decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        report.error(f"{name} is not UTF-8 text")
    except BagError as error:
        report.error(str(error))
    return ""


def _check_bagit_txt(source: _BagSource, report: BagReport) -> None:
    if _BAGIT_TXT not in source.files:
        report.error("bagit.txt is missing: not a BagIt bag (it must be at the root of the zip)")
        return
    fields = _tag_fields(source, _BAGIT_TXT, report)
    version = fields.get("BagIt-Version")
    if version is None:
        report.error("bagit.txt has no BagIt-Version")
    elif version != "1.0":
        report.warn(f"bagit.txt declares BagIt-Version {version}; OCR-D expects 1.0")
    encoding = fields.get("Tag-File-Character-Encoding", "")
    if encoding.upper().replace("-", "") != "UTF8":
        report.error(f"bagit.txt declares tag file encoding {encoding!r}; only UTF-8 is supported")


def _check_bag_info(source: _BagSource, report: BagReport) -> dict[str, str]:
    if _BAG_INFO not in source.files:
        report.error("bag-info.txt is missing (it holds the Ocrd-Identifier and Ocrd-Mets)")
        return {}
    info = _tag_fields(source, _BAG_INFO, report)
    profile = report.profile_identifier = info.get("BagIt-Profile-Identifier")
    if profile is None:
        report.warn(f"bag-info.txt has no BagIt-Profile-Identifier ({BAGIT_PROFILE_IDENTIFIER})")
    elif profile not in _OCRD_PROFILES:
        report.warn(f"bag-info.txt names an unknown BagIt profile {profile}")
    report.identifier = info.get("Ocrd-Identifier") or None
    if report.identifier is None:
        report.warn("bag-info.txt has no Ocrd-Identifier (the OCR-D profile requires one)")
    for optional in ("Bagging-Date", "Payload-Oxum"):
        if optional not in info:
            report.warn(f"bag-info.txt has no {optional}")
    mets_name = info.get("Ocrd-Mets", DEFAULT_METS_BASENAME)
    try:
        report.mets_name = _bag_path(mets_name)
    except UnsafeInputError as error:
        report.error(f"bag-info.txt Ocrd-Mets: {error}", unsafe=True)
    return info


def _manifest_entries(source: _BagSource, name: str, report: BagReport) -> dict[str, str]:
    """The `<sha512> <path>` lines of a manifest, as bag path -> lowercase hex digest."""
    entries: dict[str, str] = {}
    for number, line in enumerate(_tag_text(source, name, report).split("\n"), 1):
        line = line.rstrip("\r")
        if not line.strip():
            continue
        match = _MANIFEST_LINE.fullmatch(line)
        if not match:
            report.error(f"{name} line {number} is not '<sha512> <path>': {line[:80]!r}")
            continue
        try:
            path = _bag_path(_percent_decode(match[2]))
        except UnsafeInputError as error:
            report.error(f"{name} line {number}: {error}", unsafe=True)
            continue
        if path in entries:
            report.error(f"{name} lists {path} more than once")
            continue
        entries[path] = match[1].lower()
    return entries


def _check_payload_manifest(source: _BagSource, report: BagReport, payload: set[str]) -> None:
    for other in sorted(path for path in source.files if _ANY_MANIFEST.fullmatch(path)):
        if other not in (_MANIFEST, _TAG_MANIFEST):
            report.warn(f"{other} is not checked (only SHA-512 manifests are)")
    if _MANIFEST not in source.files:
        report.error(f"{_MANIFEST} is missing (OCR-D bags are checksummed with SHA-512)")
        return
    listed = _manifest_entries(source, _MANIFEST, report)
    for path, expected in listed.items():
        if not path.startswith(_PAYLOAD):
            report.error(f"{_MANIFEST} lists {path}, which is not under data/")
        elif path not in source.files:
            report.error(f"{path} is listed in {_MANIFEST} but missing from the bag")
        elif source.sha512(path) != expected:
            report.error(f"{path} does not match its SHA-512 checksum: damaged or changed")
    for path in sorted(payload - listed.keys()):
        report.error(f"{path} is in the payload but not in {_MANIFEST}")


def _check_tag_manifest(source: _BagSource, report: BagReport) -> None:
    if _TAG_MANIFEST not in source.files:
        report.warn(f"{_TAG_MANIFEST} is missing: the tag files are not checksummed")
        return
    for path, expected in _manifest_entries(source, _TAG_MANIFEST, report).items():
        if path.startswith(_PAYLOAD):
            report.error(f"{_TAG_MANIFEST} lists the payload file {path}")
        elif path not in source.files:
            report.error(f"{path} is listed in {_TAG_MANIFEST} but missing from the bag")
        elif source.sha512(path) != expected:
            report.error(f"{path} does not match its SHA-512 checksum in {_TAG_MANIFEST}")


def _check_tag_files(source: _BagSource, report: BagReport) -> None:
    for path in sorted(source.files):
        if path.startswith(_PAYLOAD) or path in (_BAGIT_TXT, _BAG_INFO, "fetch.txt"):
            continue
        if _ANY_MANIFEST.fullmatch(path):
            continue
        if not any(fnmatchcase(path, pattern) for pattern in _ALLOWED_TAG_FILES):
            report.warn(f"{path} is a tag file the OCR-D profile does not allow")


def _check_payload_oxum(info: dict[str, str], report: BagReport) -> None:
    oxum = info.get("Payload-Oxum")
    if oxum is None:
        return
    match = re.fullmatch(r"(\d+)\.(\d+)", oxum)
    if not match:
        report.error(f"bag-info.txt Payload-Oxum {oxum!r} is not '<bytes>.<files>'")
    elif (int(match[1]), int(match[2])) != (report.payload_bytes, report.payload_files):
        report.error(
            f"bag-info.txt Payload-Oxum {oxum} does not match the payload "
            f"({report.payload_bytes}.{report.payload_files}): files are missing or changed"
        )


def _check_mets(source: _BagSource, report: BagReport, payload: set[str]) -> None:
    mets_path = _PAYLOAD + report.mets_name
    if mets_path not in source.files:
        report.error(f"the METS {mets_path} is missing")
        return
    try:
        mets = Mets.from_bytes(source.read(mets_path, MAX_XML_BYTES))
    except UnsafeInputError as error:
        report.error(f"{mets_path}: {error}", unsafe=True)
        return
    except FormatError as error:
        report.error(f"{mets_path}: {error}")
        return
    mets_dir = posixpath.dirname(mets_path)
    referenced = {mets_path}
    for file in mets.files:
        if _is_remote(file.href):
            continue
        try:
            path = _payload_path(file.href, mets_dir)
        except UnsafeInputError as error:
            report.error(f"{mets_path}: file {file.id}: href {error}", unsafe=True)
            continue
        referenced.add(path)
        if path not in payload:
            report.error(f"{mets_path}: file {file.id}: {file.href} is not in the bag")
    for path in sorted(payload - referenced):
        report.warn(f"{path} is in the payload but not referenced by the METS")


# --- unpacking -----------------------------------------------------------------------------


def unpack_bag(bag: Path, target: Path, *, limits: ZipLimits = ZipLimits()) -> Path:
    """Unpack the OCRD-ZIP `bag` into `target` (new or empty) as a workspace; return its METS.

    The payload (data/) becomes the workspace, like `ocrd zip spill`; the bag's tag files are
    dropped. The zip is extracted into a temporary directory beside `target`, verified
    (member names, caps, checksums, METS hrefs) and only then renamed to `target`: on any
    error, UnsafeInputError (hostile) or BagError (damaged), nothing is left behind.
    """
    bag, target = Path(bag), Path(target)
    _require_empty_target(target)
    with _open_zip(bag) as archive:
        source = _ZipBag(archive, str(bag), limits)
        if source.problems:
            raise UnsafeInputError(f"{bag} refused: {'; '.join(source.problems[:5])}")
        staging = _staging_directory(target)
        try:
            _extract(source, staging)
            report = _validate(source)
            report.raise_for_errors()
            _move_into_place(staging / "data", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target / report.mets_name


def _staging_directory(target: Path) -> Path:
    """A fresh hidden directory beside `target`: same file system, so the final rename is atomic."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        return Path(
            tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".unpacking", dir=target.parent)
        )
    except OSError as error:
        raise BagError(f"cannot create {target}: {error.strerror}") from error


def _move_into_place(payload: Path, target: Path) -> None:
    """Rename the verified payload to `target`; the OS refuses if `target` filled up meanwhile."""
    try:
        os.rename(payload, target)
    except OSError as error:
        raise BagError(f"cannot move the unpacked workspace to {target}: {error}") from error


def _require_empty_target(target: Path) -> None:
    if target.is_symlink():
        raise UsageError(f"{target} is a symbolic link; unpack into a new or empty directory")
    if not target.exists():
        return
    if not target.is_dir():
        raise UsageError(f"{target} exists and is not a directory")
    if any(target.iterdir()):
        raise UsageError(f"{target} is not empty; unpack into a new or empty directory")


def _extract(source: _ZipBag, root: Path) -> None:
    """Write every member under `root` (names already checked), hashing as the bytes go by."""
    for directory in source.directories:
        _make_directory(root, directory)
    for path in source.files:
        destination = root / path
        _make_directory(root, posixpath.dirname(path))
        digest = hashlib.sha512()
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
            with os.fdopen(os.open(destination, flags, 0o666), "wb") as stream:
                for chunk in source.chunks(path):
                    digest.update(chunk)
                    stream.write(chunk)
        except OSError as error:
            raise BagError(f"{source.label}: cannot extract {path}: {error.strerror}") from error
        source.remember_sha512(path, digest.hexdigest())


def _make_directory(root: Path, path: str) -> None:
    try:
        (root / path).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise BagError(f"cannot create directory {path}: {error.strerror}") from error


# --- packing -------------------------------------------------------------------------------


def pack_workspace(
    mets_path: Path,
    output: Path,
    *,
    identifier: str | None = None,
    mets_basename: str = DEFAULT_METS_BASENAME,
    profile_identifier: str = LEGACY_BAGIT_PROFILE_IDENTIFIER,
) -> Path:
    """Pack the workspace of `mets_path` into the OCRD-ZIP `output` (replaced atomically).

    Every local file the METS references goes under data/ at its path relative to the
    workspace, and the bag's copy of the METS (named `mets_basename`) refers to it by that
    relative href. A file outside the workspace is refused (UnsafeInputError) rather than
    copied in under another name; a missing file is a BagError naming it. URL hrefs are kept
    and never fetched, which makes the bag's Ocrd-Manifestation-Depth `partial`.
    `identifier` defaults to the METS's own identifier, else a generated one;
    `profile_identifier` defaults to the one OCR-D core's validator demands.
    """
    output = Path(output)
    if "/" in mets_basename or "\\" in mets_basename or mets_basename in ("", ".", ".."):
        raise UsageError(f"the bag's METS name must be a plain file name, not {mets_basename!r}")
    mets_name = mets_basename
    if output.is_dir():
        raise UsageError(f"{output} is a directory; give the path of the .ocrd.zip to write")
    workspace = Workspace.open(mets_path)
    bag_mets = Mets.from_bytes(workspace.mets.to_bytes())
    payload = _collect_payload(workspace, bag_mets, mets_name)
    bag_info = {
        "BagIt-Profile-Identifier": _one_line(profile_identifier, "BagIt-Profile-Identifier"),
        "Bag-Software-Agent": f"ocrswarm {__version__}",
        "Bagging-Date": date.today().isoformat(),
        "Ocrd-Identifier": _one_line(
            identifier or workspace.mets.unique_identifier or f"ocrswarm:{uuid.uuid4()}",
            "Ocrd-Identifier",
        ),
        "Ocrd-Manifestation-Depth": (
            "partial" if any(_is_remote(file.href) for file in bag_mets.files) else "full"
        ),
    }
    if mets_name != DEFAULT_METS_BASENAME:
        bag_info["Ocrd-Mets"] = mets_name
    _write_zip_atomically(
        output, lambda archive: _write_bag(archive, payload, mets_name, bag_mets, bag_info)
    )
    return output


def _one_line(value: str, label: str) -> str:
    if not value.strip() or "\n" in value or "\r" in value:
        raise UsageError(f"the {label} must be one non-empty line, not {value!r}")
    return value.strip()


def _collect_payload(workspace: Workspace, bag_mets: Mets, mets_name: str) -> dict[str, Path]:
    """Bag path -> real file for every local file; relative hrefs go into `bag_mets`."""
    payload: dict[str, Path] = {}
    for file in workspace.mets.files:
        if _is_remote(file.href):
            continue
        source = workspace.resolve(file)  # refuses hrefs that lead outside the workspace
        if not source.is_file():
            raise BagError(
                f"{workspace.mets_path}: file {file.id} ({file.href}) does not exist: {source}"
            )
        relative = _relative_href(workspace, file.href, source)
        if relative == mets_name:
            raise BagError(f"{workspace.mets_path}: file {file.id} would overwrite the bag's METS")
        payload[_PAYLOAD + relative] = source
        if file.href != relative:
            bag_mets.set_href(file.id, relative)
    return payload


def _relative_href(workspace: Workspace, href: str, real: Path) -> str:
    """The href as a normalised path relative to the workspace: the name the file keeps in the
    bag. Only when that cannot be said (a file: URL, a path through a symlinked parent) is
    the file named by its real path."""
    if not is_url(href):
        lexical = Path(os.path.normpath(workspace.directory / href))
        if lexical.is_relative_to(workspace.directory):
            return lexical.relative_to(workspace.directory).as_posix()
    return real.relative_to(Path(os.path.realpath(workspace.directory))).as_posix()


def _write_bag(
    archive: zipfile.ZipFile,
    payload: dict[str, Path],
    mets_name: str,
    bag_mets: Mets,
    bag_info: dict[str, str],
) -> None:
    manifest: dict[str, str] = {}
    payload_bytes = 0
    for path, source in sorted(payload.items()):
        manifest[path], size = _add_file(archive, path, source)
        payload_bytes += size
    mets_bytes = bag_mets.to_bytes()
    manifest[_PAYLOAD + mets_name] = _add_bytes(archive, _PAYLOAD + mets_name, mets_bytes)
    payload_bytes += len(mets_bytes)
    bag_info["Payload-Oxum"] = f"{payload_bytes}.{len(manifest)}"
    tag_files = {
        _BAGIT_TXT: "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        _BAG_INFO: "".join(f"{label}: {value}\n" for label, value in bag_info.items()),
        _MANIFEST: _manifest_text(manifest),
    }
    tag_manifest = {
        name: _add_bytes(archive, name, text.encode("utf-8")) for name, text in tag_files.items()
    }
    _add_bytes(archive, _TAG_MANIFEST, _manifest_text(tag_manifest).encode("utf-8"))


def _manifest_text(digests: dict[str, str]) -> str:
    return "".join(f"{digest}  {_percent_encode(path)}\n" for path, digest in digests.items())


def _add_file(archive: zipfile.ZipFile, path: str, source: Path) -> tuple[str, int]:
    """Stream `source` into the zip as `path`; return its SHA-512 and size."""
    digest = hashlib.sha512()
    size = 0
    try:
        with source.open("rb") as stream:
            status = os.fstat(stream.fileno())
            chunk = stream.read(_CHUNK)
            info = _zip_info(path, status.st_mtime)
            info.file_size = status.st_size  # lets zipfile decide on ZIP64 before writing
            info.compress_type = _compression_for(source, chunk)
            with archive.open(info, "w") as member:
                while chunk:
                    digest.update(chunk)
                    member.write(chunk)
                    size += len(chunk)
                    chunk = stream.read(_CHUNK)
    except OSError as error:
        raise BagError(f"cannot read {source}: {error.strerror}") from error
    return digest.hexdigest(), size


def _compression_for(source: Path, head: bytes) -> int:
    """Deflate what shrinks; store what does not (compressed images, noisy uncompressed scans).

    Deflate runs at some 40 MB/s on incompressible data for a 1 % gain, so a quick trial on
    the file's head decides.
    """
    if source.suffix.lower() in _STORED_SUFFIXES:
        return zipfile.ZIP_STORED
    sample = head[:_COMPRESSION_SAMPLE]
    if len(sample) >= 4096 and len(zlib.compress(sample, 1)) > 0.9 * len(sample):
        return zipfile.ZIP_STORED
    return zipfile.ZIP_DEFLATED


def _add_bytes(archive: zipfile.ZipFile, path: str, data: bytes) -> str:
    archive.writestr(_zip_info(path, datetime.now().timestamp()), data)
    return hashlib.sha512(data).hexdigest()


def _zip_info(path: str, mtime: float) -> zipfile.ZipInfo:
    stamp = max(datetime.fromtimestamp(mtime).timetuple()[:6], _ZIP_EPOCH)
    info = zipfile.ZipInfo(path, date_time=stamp)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = (stat.S_IFREG | 0o644) << 16
    return info


def _write_zip_atomically(output: Path, write: Callable[[zipfile.ZipFile], None]) -> None:
    """Build the zip in a temporary file beside `output`, fsync it, then rename it into place."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        temporary = output.with_name(f".{output.name}.{uuid.uuid4().hex}.tmp")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise BagError(f"cannot write {output}: {error.strerror}") from error
    try:
        with os.fdopen(descriptor, "wb") as stream:
            with zipfile.ZipFile(stream, "w", allowZip64=True) as archive:
                write(archive)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, output)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        raise BagError(f"cannot write {output}: {error.strerror}") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
