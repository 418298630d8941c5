from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image, features

from ocrswarm.errors import FormatError, ImageError, MetsError, UnsafeInputError
from ocrswarm.formats.mets import MIMETYPE_PAGE, Mets
from ocrswarm.formats.workspace import Workspace
from tests.formats.test_images import write_multipage_tiff, write_png_header
from tests.render import render_page

SMALL = (240, 320)


def hostile_workspace(tmp_path: Path, *hrefs: str) -> Workspace:
    """A workspace whose METS (written by someone else) points at `hrefs`."""
    directory = tmp_path / "ws"
    directory.mkdir()
    mets = Mets.empty("urn:test:hostile")
    for number, href in enumerate(hrefs, start=1):
        mets.add_file("OCR-D-IMG", f"OCR-D-IMG_{number:04d}", href, "image/png", f"P_{number}")
    mets.save(directory / "mets.xml")
    return Workspace.open(directory)


# ---- from a folder of images -----------------------------------------------------------------


def test_from_images_in_place_in_natural_order(image_dir: Callable[..., Path]) -> None:
    source = image_dir(12, size=SMALL)
    workspace = Workspace.from_images(source)
    assert workspace.mets_path == source / "mets.xml"
    mets = Workspace.open(source).mets
    assert mets.page_ids == [f"PHYS_{n:04d}" for n in range(1, 13)]
    files = [mets.find_files(page_id=page, file_grp="OCR-D-IMG")[0] for page in mets.page_ids]
    assert [f.href for f in files] == [f"page_{n}.png" for n in range(1, 13)]
    assert [f.id for f in files] == [f"OCR-D-IMG_{n:04d}" for n in range(1, 13)]
    assert {f.mimetype for f in files} == {"image/png"}
    assert b'LABEL="page_10"' in workspace.mets_path.read_bytes()
    assert workspace.warnings == []
    assert workspace.validate() == []


def test_from_images_into_a_target_links_the_images(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    source = image_dir(3, size=SMALL)
    target = tmp_path / "workspace"
    workspace = Workspace.from_images(source, target)
    assert workspace.directory == target
    assert not (source / "mets.xml").exists()
    hrefs = [f.href for f in workspace.mets.files]
    assert hrefs == [f"OCR-D-IMG/page_{n}.png" for n in range(1, 4)]
    for n in range(1, 4):
        assert os.path.samefile(target / f"OCR-D-IMG/page_{n}.png", source / f"page_{n}.png")
    reopened = Workspace.open(target / "mets.xml")
    assert reopened.mets.files == workspace.mets.files
    assert reopened.validate() == []
    assert reopened.mets.unique_identifier is not None


def test_from_images_with_another_file_group(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    workspace = Workspace.from_images(image_dir(1, size=SMALL), tmp_path / "ws", file_grp="SCANS")
    assert [f.id for f in workspace.mets.files] == ["SCANS_0001"]
    assert (tmp_path / "ws" / "SCANS" / "page_1.png").is_file()


def test_every_supported_format(tmp_path: Path) -> None:
    source = tmp_path / "scans"
    suffixes = [".tif", ".png", ".jpg", ".jpeg", ".TIFF"]
    if features.check("jpg_2000"):
        suffixes.append(".jp2")
    for number, suffix in enumerate(suffixes, start=1):
        render_page(source / f"p{number}{suffix}", ["x"], size=SMALL)
    mets = Workspace.from_images(source).mets
    expected = {
        ".tif": "image/tiff",
        ".TIFF": "image/tiff",
        ".png": "image/png",
        ".jpg": "image/jpeg",
        ".jpeg": "image/jpeg",
        ".jp2": "image/jp2",
    }
    assert [f.mimetype for f in mets.files] == [expected[s] for s in suffixes]


def test_other_and_hidden_files_are_ignored(image_dir: Callable[..., Path]) -> None:
    source = image_dir(2, size=SMALL)
    (source / "notes.txt").write_text("scanned on Tuesday")
    render_page(source / ".hidden.png", ["x"], size=SMALL)
    (source / "sub.png").mkdir()
    mets = Workspace.from_images(source).mets
    assert [f.href for f in mets.files] == ["page_1.png", "page_2.png"]


def test_no_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("x")
    with pytest.raises(FormatError, match="no images"):
        Workspace.from_images(tmp_path)
    with pytest.raises(FormatError, match="not a directory"):
        Workspace.from_images(tmp_path / "readme.txt")


def test_an_existing_workspace_is_not_overwritten(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    source = image_dir(1, size=SMALL)
    target = tmp_path / "ws"
    target.mkdir()
    (target / "mets.xml").write_text("precious")
    with pytest.raises(FormatError, match="already exists"):
        Workspace.from_images(source, target)
    assert (target / "mets.xml").read_text() == "precious"
    Workspace.from_images(source)
    with pytest.raises(FormatError, match="already exists"):
        Workspace.from_images(source)


def test_an_image_name_xml_cannot_carry_leaves_no_workspace(
    image_dir: Callable[..., Path],
) -> None:
    source = image_dir(1, size=SMALL)
    shutil.copyfile(source / "page_1.png", source / "page_\x01.png")
    with pytest.raises(MetsError, match="XML cannot carry"):
        Workspace.from_images(source)
    assert sorted(p.name for p in source.iterdir()) == ["page_\x01.png", "page_1.png"]


def test_multipage_tiff_in_the_folder_is_refused(image_dir: Callable[..., Path]) -> None:
    source = image_dir(2, size=SMALL)
    write_multipage_tiff(source / "page_3.tif")
    with pytest.raises(ImageError, match=r"page_3\.tif has 3 pages"):
        Workspace.from_images(source)
    assert not (source / "mets.xml").exists()


def test_decompression_bomb_in_the_folder_is_refused(image_dir: Callable[..., Path]) -> None:
    source = image_dir(1, size=SMALL)
    write_png_header(source / "page_2.png", 50_000, 50_000)
    with pytest.raises(UnsafeInputError, match=r"page_2\.png"):
        Workspace.from_images(source)


def test_unreadable_image_is_registered_with_a_warning(image_dir: Callable[..., Path]) -> None:
    source = image_dir(2, size=SMALL)
    (source / "page_3.tif").write_bytes(b"II*\x00 this is no TIFF")
    workspace = Workspace.from_images(source)
    assert [f.href for f in workspace.mets.files] == ["page_1.png", "page_2.png", "page_3.tif"]
    assert workspace.mets.get_file("OCR-D-IMG_0003").mimetype == "image/tiff"
    assert len(workspace.warnings) == 1
    assert "page_3.tif" in workspace.warnings[0]
    problems = workspace.validate()
    assert len(problems) == 1
    assert "OCR-D-IMG_0003" in problems[0]


def test_a_symlinked_image_leading_out_is_refused_in_place(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    source = image_dir(1, size=SMALL)
    outside = render_page(tmp_path / "elsewhere" / "secret.png", ["x"], size=SMALL)
    (source / "page_2.png").symlink_to(outside)
    with pytest.raises(UnsafeInputError, match="pass a target directory"):
        Workspace.from_images(source)
    # With a target the image is linked or copied in, so the workspace is self-contained.
    workspace = Workspace.from_images(source, tmp_path / "ws")
    assert workspace.validate() == []


# ---- resolving hrefs -------------------------------------------------------------------------


def test_resolve_a_relative_href(tmp_path: Path) -> None:
    workspace = hostile_workspace(tmp_path, "OCR-D-IMG/a.png")
    path = workspace.resolve(workspace.mets.get_file("OCR-D-IMG_0001"))
    assert path == (tmp_path / "ws" / "OCR-D-IMG" / "a.png").resolve()
    assert workspace.resolve("OCR-D-IMG/../OCR-D-IMG/a.png") == path


@pytest.mark.parametrize("href", ["../../etc/passwd", "../secret.png", "/etc/passwd", "a/../../x"])
def test_hrefs_leading_out_are_refused(tmp_path: Path, href: str) -> None:
    workspace = hostile_workspace(tmp_path, href)
    with pytest.raises(UnsafeInputError, match="outside the workspace"):
        workspace.resolve(workspace.mets.get_file("OCR-D-IMG_0001"))
    problems = workspace.validate()
    assert any("outside the workspace" in problem for problem in problems)


def test_absolute_href_inside_resolves_but_is_a_problem(tmp_path: Path) -> None:
    inside = tmp_path / "ws" / "a.png"
    workspace = hostile_workspace(tmp_path, str(inside))
    render_page(inside, ["x"], size=SMALL)
    assert workspace.resolve(str(inside)) == inside.resolve()
    assert [p for p in workspace.validate() if "absolute href" in p] != []


def test_symlink_leading_out_is_refused(tmp_path: Path) -> None:
    workspace = hostile_workspace(tmp_path, "img/a.png", "link/a.png")
    (tmp_path / "ws" / "img").mkdir()
    render_page(tmp_path / "ws" / "img" / "a.png", ["x"], size=SMALL)
    (tmp_path / "outside").mkdir()
    (tmp_path / "ws" / "link").symlink_to(tmp_path / "outside")
    assert workspace.resolve("img/a.png").is_file()
    with pytest.raises(UnsafeInputError, match=r"link/a\.png"):
        workspace.resolve("link/a.png")


def test_symlink_inside_the_workspace_is_fine(tmp_path: Path) -> None:
    workspace = hostile_workspace(tmp_path, "alias/a.png")
    render_page(tmp_path / "ws" / "img" / "a.png", ["x"], size=SMALL)
    (tmp_path / "ws" / "alias").symlink_to(tmp_path / "ws" / "img")
    assert workspace.resolve("alias/a.png") == (tmp_path / "ws" / "img" / "a.png").resolve()
    assert workspace.validate() == []


def test_urls_are_never_fetched(tmp_path: Path) -> None:
    workspace = hostile_workspace(tmp_path, "https://example.org/a.png")
    with pytest.raises(FormatError, match="does not fetch") as caught:
        workspace.resolve(workspace.mets.get_file("OCR-D-IMG_0001"))
    assert not isinstance(caught.value, UnsafeInputError)
    assert workspace.validate() == []  # a remote reference is kept, not checked


def test_file_urls_are_held_to_the_same_rule(tmp_path: Path) -> None:
    inside = tmp_path / "ws" / "a.png"
    workspace = hostile_workspace(tmp_path, inside.as_uri(), "file:///etc/passwd")
    assert workspace.resolve(inside.as_uri()) == inside.resolve()
    with pytest.raises(UnsafeInputError):
        workspace.resolve("file:///etc/passwd")
    with pytest.raises(FormatError, match="another host"):
        workspace.resolve("file://server/share/a.png")


def test_bad_urls_are_problems(tmp_path: Path) -> None:
    workspace = hostile_workspace(tmp_path, "file:/etc/x.png", "ftp://example.org/a.png")
    problems = workspace.validate()
    assert any("malformed file URL" in p for p in problems)
    assert any("unsupported scheme" in p for p in problems)


# ---- writing files ---------------------------------------------------------------------------


def test_path_for_new_file(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "ws", identifier="urn:x")
    path, href = workspace.path_for_new_file("OCR-D-OCR", "OCR-D-OCR_0001", ".xml")
    assert (path, href) == (
        tmp_path / "ws" / "OCR-D-OCR" / "OCR-D-OCR_0001.xml",
        "OCR-D-OCR/OCR-D-OCR_0001.xml",
    )
    with pytest.raises(MetsError):
        workspace.path_for_new_file("..", "F_1", ".xml")
    with pytest.raises(MetsError):
        workspace.path_for_new_file("GRP", "../F_1", ".xml")
    with pytest.raises(MetsError, match="suffix"):
        workspace.path_for_new_file("GRP", "F_1", "/../../x")


def test_add_file_writes_and_registers(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "ws", identifier="urn:x")
    workspace.mets.add_page("PHYS_0001")
    file = workspace.add_file(
        b"<PcGts/>",
        file_grp="OCR-D-OCR",
        file_id="OCR-D-OCR_0001",
        mimetype=MIMETYPE_PAGE,
        page_id="PHYS_0001",
    )
    assert file.href == "OCR-D-OCR/OCR-D-OCR_0001.xml"
    assert workspace.resolve(file).read_bytes() == b"<PcGts/>"
    with pytest.raises(MetsError, match="already has a file"):
        workspace.add_file(
            b"other", file_grp="OCR-D-OCR", file_id="OCR-D-OCR_0001", mimetype=MIMETYPE_PAGE
        )
    assert workspace.resolve(file).read_bytes() == b"<PcGts/>"  # refused before writing
    workspace.add_file(
        b"<PcGts>2</PcGts>",
        file_grp="OCR-D-OCR",
        file_id="OCR-D-OCR_0001",
        mimetype=MIMETYPE_PAGE,
        page_id="PHYS_0001",
        replace=True,
    )
    assert workspace.resolve(file).read_bytes() == b"<PcGts>2</PcGts>"
    workspace.save()
    reopened = Workspace.open(tmp_path / "ws")
    assert reopened.mets.find_files(page_id="PHYS_0001", file_grp="OCR-D-OCR") == [file]
    assert reopened.validate() == []


def test_add_file_with_an_href(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "ws")
    file = workspace.add_file(
        b"img", file_grp="BIN", file_id="BIN_1", mimetype="image/png", href="deep/dir/b.png"
    )
    assert (tmp_path / "ws" / "deep" / "dir" / "b.png").read_bytes() == b"img"
    assert file.href == "deep/dir/b.png"
    with pytest.raises(UnsafeInputError):
        workspace.add_file(
            b"x", file_grp="BIN", file_id="BIN_2", mimetype="image/png", href="../x.png"
        )
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(MetsError, match="suffix"):
        workspace.add_file(b"x", file_grp="BIN", file_id="BIN_3", mimetype="application/x-what")


# ---- creating, opening, validating -----------------------------------------------------------


def test_create_an_empty_workspace(tmp_path: Path) -> None:
    workspace = Workspace.create(tmp_path / "new", identifier="urn:x:1")
    assert (tmp_path / "new" / "mets.xml").is_file()
    assert Workspace.open(tmp_path / "new").mets.unique_identifier == "urn:x:1"
    assert workspace.validate() == ["METS lists no files"]
    with pytest.raises(FormatError, match="already exists"):
        Workspace.create(tmp_path / "new")


def test_open_without_a_mets(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="no METS"):
        Workspace.open(tmp_path)


def test_validate_finds_the_problems(tmp_path: Path) -> None:
    directory = tmp_path / "ws"
    directory.mkdir()
    render_page(directory / "ok.png", ["x"], size=SMALL)
    write_multipage_tiff(directory / "book.tif")
    mets = Mets.from_bytes(
        b'<mets:mets xmlns:mets="http://www.loc.gov/METS/" '
        b'xmlns:xlink="http://www.w3.org/1999/xlink"><mets:fileSec><mets:fileGrp USE="IMG">'
        b'<mets:file ID="OK" MIMETYPE="image/png"><mets:FLocat LOCTYPE="OTHER" '
        b'OTHERLOCTYPE="FILE" xlink:href="ok.png"/></mets:file>'
        b'<mets:file ID="MISSING" MIMETYPE="image/png"><mets:FLocat LOCTYPE="OTHER" '
        b'OTHERLOCTYPE="FILE" xlink:href="missing.png"/></mets:file>'
        b'<mets:file ID="BOOK" MIMETYPE="image/tiff"><mets:FLocat LOCTYPE="OTHER" '
        b'OTHERLOCTYPE="FILE" xlink:href="book.tif"/></mets:file>'
        b'<mets:file ID="LOOSE"><mets:FLocat LOCTYPE="OTHER" OTHERLOCTYPE="FILE" '
        b'xlink:href="ok.png"/></mets:file>'
        b"</mets:fileGrp></mets:fileSec>"
        b'<mets:structMap TYPE="PHYSICAL"><mets:div TYPE="physSequence">'
        b'<mets:div ID="P1" TYPE="page"><mets:fptr FILEID="OK"/><mets:fptr FILEID="MISSING"/>'
        b'<mets:fptr FILEID="BOOK"/><mets:fptr FILEID="GHOST"/></mets:div>'
        b"</mets:div></mets:structMap></mets:mets>"
    )
    mets.save(directory / "mets.xml")
    problems = Workspace.open(directory).validate()
    joined = "\n".join(problems)
    assert "no unique identifier" in joined
    assert "'MISSING' (fileGrp 'IMG'): 'missing.png' does not exist" in joined
    assert "'BOOK'" in joined and "3 pages" in joined
    assert "'LOOSE' (fileGrp 'IMG') has no MIMETYPE" in joined
    assert "'LOOSE' (fileGrp 'IMG') is on no page" in joined
    assert "page 'P1' points to file 'GHOST'" in joined
    assert not any("'OK'" in problem for problem in problems)
    assert Workspace.open(directory).validate(check_files=False) == [
        p for p in problems if "does not exist" not in p and "pages;" not in p
    ]


# ---- the real workspaces in ../shared/data ---------------------------------------------------


@pytest.mark.parametrize("relative", ["bebel_frau_1879", "kant_aufklaerung_1784/data"])
def test_real_workspaces_open_validate_and_round_trip(
    shared_data: Path, tmp_path: Path, relative: str
) -> None:
    original = Workspace.open(shared_data / relative)
    assert original.validate() == []
    for file in original.mets.files:
        if not file.is_url:
            assert original.resolve(file).is_file()
    copy = tmp_path / "copy"
    shutil.copytree(shared_data / relative, copy)
    workspace = Workspace.open(copy)
    workspace.mets.add_agent("ocrswarm-test", otherrole="layout/analysis")
    workspace.save()
    reopened = Workspace.open(copy / "mets.xml")
    assert reopened.mets.files == original.mets.files
    assert reopened.mets.page_ids == original.mets.page_ids
    assert reopened.validate() == []


def test_bebel_remote_images_are_kept_not_fetched(shared_data: Path) -> None:
    workspace = Workspace.open(shared_data / "bebel_frau_1879")
    remote = workspace.mets.find_files(file_grp="DEFAULT")
    assert [f.href.startswith("http://media.dwds.de/") for f in remote] == [True] * 4
    with pytest.raises(FormatError, match="does not fetch"):
        workspace.resolve(remote[0])
    local = workspace.mets.find_files(page_id="phys_0001", file_grp="OCR-D-IMG")[0]
    with Image.open(workspace.resolve(local)) as image:
        assert image.format == "TIFF"
