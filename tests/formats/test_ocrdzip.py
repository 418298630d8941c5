"""OCRD-ZIP: pack, unpack and validate real and generated bags, and refuse hostile ones."""

from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import stat
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from ocrswarm.errors import BagError, UnsafeInputError, UsageError
from ocrswarm.formats import ocrdzip
from ocrswarm.formats.mets import Mets
from ocrswarm.formats.ocrdzip import (
    BAGIT_PROFILE_IDENTIFIER,
    LEGACY_BAGIT_PROFILE_IDENTIFIER,
    ZipLimits,
    pack_workspace,
    unpack_bag,
    validate_bag,
)

PAGE = "application/vnd.prima.page+xml"
REMOTE_IMAGE = "https://example.org/scans/page_9.png"


# --- building workspaces and bags ----------------------------------------------------------


def mets_xml(files: list[tuple[str, str, str, str]], *, doctype: str = "") -> bytes:
    """A METS with one page per OCR-D-IMG file; `files` are (fileGrp, ID, MIMETYPE, href)."""
    groups: dict[str, list[str]] = {}
    for group, file_id, mimetype, href in files:
        groups.setdefault(group, []).append(
            f'<mets:file ID="{file_id}" MIMETYPE="{mimetype}">'
            f'<mets:FLocat LOCTYPE="OTHER" OTHERLOCTYPE="FILE" xlink:href="{href}"/></mets:file>'
        )
    file_sec = "".join(
        f'<mets:fileGrp USE="{group}">{"".join(entries)}</mets:fileGrp>'
        for group, entries in groups.items()
    )
    pages = "".join(
        f'<mets:div TYPE="page" ID="PHYS_{n:04d}"><mets:fptr FILEID="{file_id}"/></mets:div>'
        for n, (_, file_id, _, _) in enumerate(files, 1)
    )
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>{doctype}'
        '<mets:mets xmlns:mets="http://www.loc.gov/METS/" '
        'xmlns:xlink="http://www.w3.org/1999/xlink" xmlns:mods="http://www.loc.gov/mods/v3">'
        '<mets:dmdSec ID="DMDLOG_0001"><mets:mdWrap MDTYPE="MODS"><mets:xmlData><mods:mods>'
        '<mods:identifier type="purl">urn:test:sample-book</mods:identifier>'
        "</mods:mods></mets:xmlData></mets:mdWrap></mets:dmdSec>"
        f"<mets:fileSec>{file_sec}</mets:fileSec>"
        '<mets:structMap TYPE="PHYSICAL"><mets:div TYPE="physSequence">'
        f"{pages}</mets:div></mets:structMap></mets:mets>"
    ).encode()


@pytest.fixture
def workspace(image_dir: Callable[..., Path], tmp_path: Path) -> Path:
    """A workspace on disk: three rendered scans, one PAGE file, one image by absolute path,
    one image by URL. Returns the METS path."""
    root = tmp_path / "ws"
    shutil.copytree(image_dir(3), root / "OCR-D-IMG")
    (root / "OCR-D-GT-PAGE").mkdir()
    (root / "OCR-D-GT-PAGE" / "page_1.xml").write_bytes(b"<PcGts>not parsed here</PcGts>")
    absolute = (root / "OCR-D-IMG" / "page_3.png").resolve()
    files = [
        ("OCR-D-IMG", "IMG_1", "image/png", "OCR-D-IMG/page_1.png"),
        ("OCR-D-IMG", "IMG_2", "image/png", "./OCR-D-IMG/page_2.png"),
        ("OCR-D-IMG", "IMG_3", "image/png", str(absolute)),
        ("OCR-D-IMG", "IMG_9", "image/png", REMOTE_IMAGE),
        ("OCR-D-GT-PAGE", "GT_1", PAGE, "OCR-D-GT-PAGE/page_1.xml"),
    ]
    (root / "mets.xml").write_bytes(mets_xml(files))
    return root / "mets.xml"


def sha512(data: bytes) -> str:
    return hashlib.sha512(data).hexdigest()


def write_bag(
    path: Path,
    payload: dict[str, bytes],
    *,
    bag_info: dict[str, str] | None = None,
    extra: list[tuple[zipfile.ZipInfo | str, bytes]] = (),  # type: ignore[assignment]
    unlisted: tuple[str, ...] = (),
) -> Path:
    """Write a bag whose manifests are right for `payload` (paths under data/); `extra`
    members are added as they are, `unlisted` payload paths are left out of the manifest."""
    info = {
        "BagIt-Profile-Identifier": BAGIT_PROFILE_IDENTIFIER,
        "Bagging-Date": "2026-01-01",
        "Ocrd-Identifier": "urn:test:bag",
        "Payload-Oxum": f"{sum(map(len, payload.values()))}.{len(payload)}",
        **(bag_info or {}),
    }
    tags = {
        "bagit.txt": b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n",
        "bag-info.txt": "".join(f"{k}: {v}\n" for k, v in info.items()).encode(),
        "manifest-sha512.txt": "".join(
            f"{sha512(data)}  {name}\n" for name, data in payload.items() if name not in unlisted
        ).encode(),
    }
    tags["tagmanifest-sha512.txt"] = "".join(
        f"{sha512(data)}  {name}\n" for name, data in tags.items()
    ).encode()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns about duplicate names
        for name, data in {**tags, **payload}.items():
            archive.writestr(name, data)
        for member, data in extra:
            archive.writestr(member, data)
    return path


def valid_payload(**overrides: bytes) -> dict[str, bytes]:
    image = b"\x89PNG fake image bytes"
    payload = {
        "data/mets.xml": mets_xml([("OCR-D-IMG", "IMG_1", "image/png", "OCR-D-IMG/p1.png")]),
        "data/OCR-D-IMG/p1.png": image,
    }
    payload.update({f"data/{name.replace('__', '/')}": data for name, data in overrides.items()})
    return payload


def listing(directory: Path) -> list[str]:
    return sorted(str(p.relative_to(directory)) for p in directory.rglob("*"))


def files_and_digests(directory: Path) -> dict[str, str]:
    return {
        p.relative_to(directory).as_posix(): sha512(p.read_bytes())
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


# --- pack, unpack, validate ----------------------------------------------------------------


def test_pack_then_unpack_gives_the_same_files_with_relative_hrefs(
    workspace: Path, tmp_path: Path
) -> None:
    bag = pack_workspace(workspace, tmp_path / "out" / "book.ocrd.zip", identifier="urn:test:b")
    assert bag == tmp_path / "out" / "book.ocrd.zip"

    with zipfile.ZipFile(bag) as archive:
        names = set(archive.namelist())
        bag_info = archive.read("bag-info.txt").decode()
        manifest = archive.read("manifest-sha512.txt").decode()
        tag_manifest = archive.read("tagmanifest-sha512.txt").decode()
        assert archive.read("bagit.txt") == (
            b"BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n"
        )
    local = ["OCR-D-IMG/page_1.png", "OCR-D-IMG/page_2.png", "OCR-D-IMG/page_3.png"]
    local.append("OCR-D-GT-PAGE/page_1.xml")
    assert names == {
        "bagit.txt",
        "bag-info.txt",
        "manifest-sha512.txt",
        "tagmanifest-sha512.txt",
        "data/mets.xml",
        *(f"data/{name}" for name in local),
    }
    for name in local:
        assert f"{sha512((workspace.parent / name).read_bytes())}  data/{name}\n" in manifest
    for tag in ("bagit.txt", "bag-info.txt", "manifest-sha512.txt"):
        assert tag in tag_manifest
    # The identifier OCR-D core's `ocrd zip validate` demands (it refuses the newer one).
    assert f"BagIt-Profile-Identifier: {LEGACY_BAGIT_PROFILE_IDENTIFIER}\n" in bag_info
    assert "Ocrd-Identifier: urn:test:b\n" in bag_info
    assert "Ocrd-Manifestation-Depth: partial\n" in bag_info  # one image is only a URL
    assert "Ocrd-Mets" not in bag_info
    assert "Bag-Software-Agent: ocrswarm " in bag_info

    report = validate_bag(bag)
    assert report.ok, report.errors
    assert report.warnings == []
    assert report.identifier == "urn:test:b"
    assert report.payload_files == len(local) + 1

    target = tmp_path / "unpacked"
    mets_path = unpack_bag(bag, target)
    assert mets_path == target / "mets.xml"
    originals = files_and_digests(workspace.parent)
    unpacked = files_and_digests(target)
    assert {name: originals[name] for name in local} == {name: unpacked[name] for name in local}
    assert set(unpacked) == {*local, "mets.xml"}
    hrefs = {file.id: file.href for file in Mets.read(mets_path).files}
    assert hrefs == {
        "IMG_1": "OCR-D-IMG/page_1.png",
        "IMG_2": "OCR-D-IMG/page_2.png",
        "IMG_3": "OCR-D-IMG/page_3.png",  # was absolute
        "IMG_9": REMOTE_IMAGE,
        "GT_1": "OCR-D-GT-PAGE/page_1.xml",
    }
    # The workspace's own METS is untouched: the rewriting happened in the bag's copy.
    assert str(workspace.parent.resolve()) in workspace.read_text()


def test_pack_uses_the_mets_identifier_a_custom_mets_name_and_full_depth(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    root = tmp_path / "ws"
    shutil.copytree(image_dir(1), root / "img")
    (root / "book.xml").write_bytes(mets_xml([("OCR-D-IMG", "I1", "image/png", "img/page_1.png")]))
    bag = pack_workspace(
        root / "book.xml",
        tmp_path / "b.zip",
        mets_basename="book-mets.xml",
        profile_identifier=BAGIT_PROFILE_IDENTIFIER,
    )
    with zipfile.ZipFile(bag) as archive:
        bag_info = archive.read("bag-info.txt").decode()
    assert f"BagIt-Profile-Identifier: {BAGIT_PROFILE_IDENTIFIER}\n" in bag_info
    assert "Ocrd-Identifier: urn:test:sample-book\n" in bag_info
    assert "Ocrd-Mets: book-mets.xml\n" in bag_info
    assert "Ocrd-Manifestation-Depth: full\n" in bag_info
    report = validate_bag(bag)
    assert report.ok and report.mets_name == "book-mets.xml", report.errors
    assert unpack_bag(bag, tmp_path / "u") == tmp_path / "u" / "book-mets.xml"
    assert (tmp_path / "u" / "img" / "page_1.png").read_bytes() == (
        root / "img" / "page_1.png"
    ).read_bytes()


def test_pack_deflates_only_what_shrinks(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "img").mkdir(parents=True)
    (root / "img" / "noise.tif").write_bytes(os.urandom(300_000))  # an uncompressed noisy scan
    (root / "img" / "page.png").write_bytes(b"\x89PNG" + bytes(100_000))  # PNG: never again
    (root / "page.xml").write_bytes(b"<TextLine/>" * 10_000)
    files = [
        ("IMG", "TIF", "image/tiff", "img/noise.tif"),
        ("IMG", "PNG", "image/png", "img/page.png"),
        ("PAGE", "XML", PAGE, "page.xml"),
    ]
    (root / "mets.xml").write_bytes(mets_xml(files))
    bag = pack_workspace(root / "mets.xml", tmp_path / "b.zip")
    with zipfile.ZipFile(bag) as archive:
        methods = {info.filename: info.compress_type for info in archive.infolist()}
    assert methods["data/img/noise.tif"] == zipfile.ZIP_STORED
    assert methods["data/img/page.png"] == zipfile.ZIP_STORED
    assert methods["data/page.xml"] == zipfile.ZIP_DEFLATED
    assert methods["data/mets.xml"] == zipfile.ZIP_DEFLATED
    assert unpack_bag(bag, tmp_path / "u").is_file()
    assert (tmp_path / "u" / "img" / "noise.tif").read_bytes() == (
        root / "img" / "noise.tif"
    ).read_bytes()


def test_pack_names_a_missing_file_and_keeps_the_old_bag(workspace: Path, tmp_path: Path) -> None:
    output = tmp_path / "book.ocrd.zip"
    output.write_bytes(b"the previous bag")
    (workspace.parent / "OCR-D-IMG" / "page_2.png").unlink()
    with pytest.raises(BagError, match=r"IMG_2.*page_2\.png"):
        pack_workspace(workspace, output)
    assert output.read_bytes() == b"the previous bag"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book.ocrd.zip", "scans", "ws"]


def test_pack_refuses_a_file_outside_the_workspace(workspace: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere.png"
    outside.write_bytes(b"not in the workspace")
    workspace.write_bytes(mets_xml([("OCR-D-IMG", "IMG_X", "image/png", "../elsewhere.png")]))
    with pytest.raises(UnsafeInputError):
        pack_workspace(workspace, tmp_path / "b.zip")
    assert not (tmp_path / "b.zip").exists()


def test_pack_refuses_a_bad_identifier_or_mets_name(workspace: Path, tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="one non-empty line"):
        pack_workspace(workspace, tmp_path / "b.zip", identifier="two\nlines")
    with pytest.raises(UsageError, match="plain file name"):
        pack_workspace(workspace, tmp_path / "b.zip", mets_basename="../mets.xml")
    assert not (tmp_path / "b.zip").exists()


def test_unpack_refuses_a_non_empty_target_and_leaves_it_alone(
    workspace: Path, tmp_path: Path
) -> None:
    bag = pack_workspace(workspace, tmp_path / "b.zip")
    target = tmp_path / "target"
    target.mkdir()
    (target / "precious.txt").write_text("keep me")
    with pytest.raises(UsageError, match="not empty"):
        unpack_bag(bag, target)
    assert listing(target) == ["precious.txt"]
    assert (target / "precious.txt").read_text() == "keep me"


def test_unpack_into_an_existing_empty_directory(workspace: Path, tmp_path: Path) -> None:
    bag = pack_workspace(workspace, tmp_path / "b.zip")
    (tmp_path / "empty").mkdir()
    assert unpack_bag(bag, tmp_path / "empty").is_file()


def test_a_target_filled_while_unpacking_is_not_overwritten(
    workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bag = pack_workspace(workspace, tmp_path / "b.zip")
    target = tmp_path / "target"
    target.mkdir()
    real_extract = ocrdzip._extract

    def extract_while_someone_writes(*args: object) -> None:
        real_extract(*args)  # type: ignore[arg-type]
        (target / "arrived.txt").write_text("written by someone else meanwhile")

    monkeypatch.setattr(ocrdzip, "_extract", extract_while_someone_writes)
    with pytest.raises(BagError, match="cannot move the unpacked workspace"):
        unpack_bag(bag, target)
    assert listing(target) == ["arrived.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.zip", "scans", "target", "ws"]


# --- real bags -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mets_name", "identifier"),
    [
        ("example_ws2.ocrd.zip", "mets.xml", "example_ws2"),
        ("example_ws_different_mets.ocrd.zip", "test-workspace-mets.xml", "test-workspace-mets-1"),
    ],
)
def test_real_bags_validate_leniently_and_unpack(
    shared_data: Path, tmp_path: Path, name: str, mets_name: str, identifier: str
) -> None:
    bag = shared_data / "ocrd-zip" / name
    report = validate_bag(bag)
    assert report.ok, report.errors
    assert report.identifier == identifier
    assert report.mets_name == mets_name
    assert report.profile_identifier == LEGACY_BAGIT_PROFILE_IDENTIFIER

    mets_path = unpack_bag(bag, tmp_path / "ws")
    assert mets_path == tmp_path / "ws" / mets_name
    image = Mets.read(mets_path).files[0]
    assert (tmp_path / "ws" / image.href).is_file()
    with zipfile.ZipFile(bag) as archive:
        assert (tmp_path / "ws" / image.href).read_bytes() == archive.read(f"data/{image.href}")
    assert not (tmp_path / "ws" / "bag-info.txt").exists()


def test_the_unzipped_kant_bag_validates(shared_data: Path) -> None:
    report = validate_bag(shared_data / "kant_aufklaerung_1784")
    assert report.ok, report.errors
    assert report.identifier == "ocrd:kant_aufklaerung_1784"
    assert report.payload_files == 7


def test_a_bag_directory_with_a_changed_file_fails(shared_data: Path, tmp_path: Path) -> None:
    copy = tmp_path / "kant"
    shutil.copytree(shared_data / "kant_aufklaerung_1784", copy)
    for path in copy.rglob("*"):
        path.chmod(path.stat().st_mode | stat.S_IWUSR)
    page = copy / "data" / "OCR-D-GT-PAGE" / "PAGE_0017_PAGE.xml"
    page.write_bytes(page.read_bytes().replace(b"Aufkl", b"Aufkl\xc3\xa4", 1))
    (copy / "data" / "OCR-D-IMG" / "INPUT_0020.tif").unlink()
    (copy / "data" / "link.tif").symlink_to("/etc/passwd")
    errors = validate_bag(copy).errors
    assert any("PAGE_0017_PAGE.xml does not match its SHA-512" in e for e in errors), errors
    assert any("INPUT_0020.tif is listed" in e and "missing" in e for e in errors), errors
    assert any("Payload-Oxum" in e for e in errors), errors
    assert any("link.tif is a symbolic link" in e for e in errors), errors


# --- damaged bags: validation errors, unpack refuses ---------------------------------------


def assert_unpack_refused(
    bag: Path,
    tmp_path: Path,
    error: type[Exception],
    match: str,
    limits: ZipLimits | None = None,
) -> None:
    """unpack_bag raises `error`, leaves an empty target empty and writes nothing beside it."""
    target = tmp_path / "target"
    target.mkdir()
    before = listing(tmp_path)
    with pytest.raises(error, match=match):
        unpack_bag(bag, target, limits=limits or ZipLimits())
    assert listing(tmp_path) == before
    assert listing(target) == []
    assert not (tmp_path.parent / "evil").exists()


def test_a_corrupted_checksum_is_an_error(tmp_path: Path) -> None:
    payload = valid_payload()
    bag = write_bag(tmp_path / "b.zip", payload)
    assert validate_bag(bag).ok
    damaged = write_bag(tmp_path / "damaged.zip", payload)
    with zipfile.ZipFile(bag) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename == "data/OCR-D-IMG/p1.png":
                data = data.replace(b"fake", b"FAKE")
            target.writestr(info, data)
    report = validate_bag(damaged)
    assert report.errors == [
        "data/OCR-D-IMG/p1.png does not match its SHA-512 checksum: damaged or changed"
    ]
    assert_unpack_refused(damaged, tmp_path, BagError, "p1.png does not match its SHA-512")


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ({"unlisted": ("data/OCR-D-IMG/p1.png",)}, "p1.png is in the payload but not in"),
        ({"extra": [("fetch.txt", b"http://x 1 data/y\n")]}, "fetch.txt is present"),
        ({"bag_info": {"Payload-Oxum": "1.1"}}, "Payload-Oxum 1.1 does not match"),
        ({"bag_info": {"Ocrd-Mets": "nowhere.xml"}}, "the METS data/nowhere.xml is missing"),
    ],
)
def test_damaged_bags_are_errors(tmp_path: Path, damage: dict[str, object], message: str) -> None:
    bag = write_bag(tmp_path / "b.zip", valid_payload(), **damage)  # type: ignore[arg-type]
    report = validate_bag(bag)
    assert any(message in error for error in report.errors), report.errors
    assert not report.unsafe
    assert_unpack_refused(bag, tmp_path, BagError, message)


def test_a_manifest_entry_without_its_file_is_an_error(tmp_path: Path) -> None:
    bag = tmp_path / "b.zip"
    write_bag(bag, valid_payload())
    with zipfile.ZipFile(bag) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    del members["data/OCR-D-IMG/p1.png"]
    with zipfile.ZipFile(bag, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    errors = validate_bag(bag).errors
    assert "data/OCR-D-IMG/p1.png is listed in manifest-sha512.txt but missing from the bag" in (
        errors
    )
    assert any("OCR-D-IMG/p1.png is not in the bag" in error for error in errors), errors


def test_missing_optional_fields_and_odd_profiles_are_only_warnings(tmp_path: Path) -> None:
    bag = tmp_path / "b.zip"
    payload = valid_payload()
    with zipfile.ZipFile(bag, "w") as archive:
        archive.writestr("bagit.txt", "BagIt-Version: 0.97\nTag-File-Character-Encoding: UTF-8")
        archive.writestr("bag-info.txt", "BagIt-Profile-Identifier: https://example.org/p\n")
        archive.writestr(
            "manifest-sha512.txt",
            "".join(f"{sha512(data)} {name}\n" for name, data in payload.items()),
        )
        for name, data in payload.items():
            archive.writestr(name, data)
    report = validate_bag(bag)
    assert report.ok, report.errors
    assert report.identifier is None
    warned = " | ".join(report.warnings)
    for expected in ("unknown BagIt profile", "0.97", "Ocrd-Identifier", "Bagging-Date"):
        assert expected in warned
    assert "tagmanifest-sha512.txt is missing" in warned
    assert unpack_bag(bag, tmp_path / "ws").is_file()


def test_an_unreferenced_payload_file_is_a_warning(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "b.zip", valid_payload(notes__readme=b"stray"))
    report = validate_bag(bag)
    assert report.ok, report.errors
    assert report.warnings == ["data/notes/readme is in the payload but not referenced by the METS"]


# --- hostile bags --------------------------------------------------------------------------


def symlink_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


def bzip2_member(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.compress_type = zipfile.ZIP_BZIP2
    return info


@pytest.mark.parametrize(
    ("member", "message"),
    [
        ("../evil", r"'\.\./evil' leaves the bag through '\.\.'"),
        ("data/../../evil", "leaves the bag"),
        ("/etc/evil", r"'/etc/evil' is an absolute path"),
        ("C:\\evil", "backslash"),
        ("C:/evil", "drive letter"),
        ("data\\..\\..\\evil", "backslash"),
        ("data//evil", "empty or '.' path component"),
        (symlink_member("data/evil"), "is a symbolic link"),
        (bzip2_member("data/evil"), "only stored and deflate"),
        ("data/OCR-D-IMG/p1.png", "occurs more than once"),
    ],
)
def test_hostile_member_names_are_refused(
    tmp_path: Path, member: str | zipfile.ZipInfo, message: str
) -> None:
    bag = write_bag(tmp_path / "evil.zip", valid_payload(), extra=[(member, b"/etc/passwd")])
    assert_unpack_refused(bag, tmp_path, UnsafeInputError, message)
    report = validate_bag(bag)
    assert report.unsafe
    assert any(re.search(message, error) for error in report.errors), report.errors


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ("../../etc/passwd", "leaves the bag"),
        ("/etc/passwd", "absolute path"),
        ("data/x\x00y", "NUL byte"),
        ("data\\..\\..\\evil", "backslash"),
    ],
)
def test_manifest_paths_that_leave_the_bag_are_refused(
    tmp_path: Path, entry: str, message: str
) -> None:
    payload = valid_payload()
    bag = write_bag(tmp_path / "evil.zip", payload)
    with zipfile.ZipFile(bag) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    members["manifest-sha512.txt"] += f"{sha512(b'x')}  {entry}\n".encode()
    with zipfile.ZipFile(bag, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    report = validate_bag(bag)
    assert report.unsafe
    assert any(
        f"manifest-sha512.txt line 3: {entry!r}" in error and message in error
        for error in report.errors
    ), report.errors
    assert_unpack_refused(bag, tmp_path, UnsafeInputError, message)


def test_an_encrypted_member_is_refused(tmp_path: Path) -> None:
    bag = write_bag(tmp_path / "evil.zip", valid_payload())
    patch_member(bag, "data/OCR-D-IMG/p1.png", "flags", 0x1)
    assert_unpack_refused(bag, tmp_path, UnsafeInputError, "'data/OCR-D-IMG/p1.png' is encrypted")


@pytest.mark.parametrize(
    ("mets", "message"),
    [
        (
            mets_xml(
                [("OCR-D-IMG", "IMG_1", "image/png", "OCR-D-IMG/p1.png")],
                doctype='<!DOCTYPE mets [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;">]>',
            ),
            "DOCTYPE",
        ),
        (
            mets_xml(
                [("OCR-D-IMG", "IMG_1", "image/png", "&xxe;")],
                doctype='<!DOCTYPE mets [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>',
            ),
            "DOCTYPE",
        ),
        (mets_xml([("OCR-D-IMG", "IMG_1", "image/png", "../../outside")]), "outside the bag"),
        (mets_xml([("OCR-D-IMG", "IMG_1", "image/png", "/etc/passwd")]), "absolute path"),
        (mets_xml([("OCR-D-IMG", "IMG_1", "image/png", "file:///etc/passwd")]), "file: URL"),
    ],
)
def test_hostile_mets_is_refused(tmp_path: Path, mets: bytes, message: str) -> None:
    bag = write_bag(tmp_path / "evil.zip", valid_payload(**{"mets.xml": mets}))
    report = validate_bag(bag)
    assert report.unsafe
    assert any(message in error for error in report.errors), report.errors
    assert_unpack_refused(bag, tmp_path, UnsafeInputError, message)


def zeros_bag(path: Path, size: int) -> Path:
    return write_bag(path, valid_payload(**{"OCR-D-IMG__zeros.bin": bytes(size)}))


def test_a_zip_bomb_is_refused_by_its_ratio(tmp_path: Path) -> None:
    bag = zeros_bag(tmp_path / "bomb.zip", 50 * 1024 * 1024)
    assert bag.stat().st_size < 200_000
    assert_unpack_refused(bag, tmp_path, UnsafeInputError, "expands .*-fold.*zip bomb")
    with pytest.raises(UnsafeInputError, match="zip bomb"):
        validate_bag(bag)


@pytest.mark.parametrize(
    ("limits", "message"),
    [
        (ZipLimits(max_ratio=10_000, max_total_bytes=4 * 1024 * 1024), "declares more than"),
        (ZipLimits(max_ratio=10_000, max_file_bytes=4 * 1024 * 1024), "per-file limit"),
        (ZipLimits(max_files=5), "more than the limit of 5"),
    ],
)
def test_caps_on_size_and_file_count(tmp_path: Path, limits: ZipLimits, message: str) -> None:
    bag = zeros_bag(tmp_path / "big.zip", 5 * 1024 * 1024)
    assert_unpack_refused(bag, tmp_path, UnsafeInputError, message, limits)


def patch_member(bag: Path, member: str, field: str, value: int) -> None:
    """Overwrite a header field of `member` in its local header and central directory entry."""
    local_offset, central_offset, size = {
        "flags": (6, 8, "<H"),
        "file_size": (22, 24, "<I"),
    }[field]
    data = bytearray(bag.read_bytes())
    with zipfile.ZipFile(bag) as archive:
        info = archive.getinfo(member)
    struct.pack_into(size, data, info.header_offset + local_offset, value)
    name = member.encode()
    central = data.rfind(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(name)] != name:
        central = data.rfind(b"PK\x01\x02", 0, central)
    struct.pack_into(size, data, central + central_offset, value)
    bag.write_bytes(bytes(data))


def test_a_header_lying_about_the_size_is_refused(tmp_path: Path) -> None:
    bag = zeros_bag(tmp_path / "liar.zip", 5 * 1024 * 1024)
    patch_member(bag, "data/OCR-D-IMG/zeros.bin", "file_size", 1000)
    with zipfile.ZipFile(bag) as archive:
        assert archive.getinfo("data/OCR-D-IMG/zeros.bin").file_size == 1000
    assert_unpack_refused(bag, tmp_path, BagError, "zeros.bin.* is corrupt: Bad CRC-32")


def test_bytes_are_counted_as_they_stream_not_taken_from_the_header(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever zipfile does, more bytes than declared are refused while streaming."""
    bag = write_bag(tmp_path / "liar.zip", valid_payload())
    real_open = zipfile.ZipFile.open

    def open_flood(self: zipfile.ZipFile, name: object, *args: object, **kw: object) -> object:
        member = name.filename if isinstance(name, zipfile.ZipInfo) else name
        if member == "data/OCR-D-IMG/p1.png":
            return io.BytesIO(bytes(3 * 1024 * 1024))
        return real_open(self, name, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", open_flood)
    assert_unpack_refused(bag, tmp_path, UnsafeInputError, "more than the 21 bytes its header")


def test_not_a_zip_is_a_clear_error(tmp_path: Path) -> None:
    bag = tmp_path / "b.zip"
    bag.write_bytes(b"PK\x03\x04 this is not really a zip")
    assert_unpack_refused(bag, tmp_path, BagError, "not a readable zip file")
    with pytest.raises(BagError, match="does not exist"):
        validate_bag(tmp_path / "missing.zip")
