"""The `ocrswarm workspace` and `ocrswarm export` commands, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

from lxml import etree

from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.page import PcGts, page_to_bytes
from ocrswarm.formats.workspace import Workspace


def ocrswarm(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocrswarm", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def test_version_and_help() -> None:
    version = ocrswarm("--version")
    assert version.returncode == 0
    assert "ocrswarm, version" in version.stdout
    helped = ocrswarm("--help")
    assert helped.returncode == 0
    assert "workspace" in helped.stdout and "export" in helped.stdout


def test_unknown_option_is_a_usage_error() -> None:
    done = ocrswarm("workspace", "info", "--no-such-option", "x")
    assert done.returncode == 2
    assert "No such option" in done.stderr


def test_init_info_pack_unpack_validate(image_dir: Callable[..., Path], tmp_path: Path) -> None:
    scans = image_dir(12)
    ws = tmp_path / "ws"
    assert ocrswarm("workspace", "init", scans, "-o", ws).returncode == 0

    info = ocrswarm("workspace", "info", ws / "mets.xml", "--json")
    assert info.returncode == 0, info.stderr
    summary = json.loads(info.stdout)
    assert summary["pages"] == 12
    assert summary["file_groups"] == {"OCR-D-IMG": 12}
    order = [f.href for f in Workspace.open(ws / "mets.xml").mets.find_files(file_grp="OCR-D-IMG")]
    assert [Path(href).stem for href in order] == [f"page_{n}" for n in range(1, 13)]

    bag = tmp_path / "ws.ocrd.zip"
    assert ocrswarm("workspace", "pack", ws, "-o", bag).returncode == 0
    assert ocrswarm("workspace", "validate", bag).returncode == 0
    unpacked = tmp_path / "unpacked"
    done = ocrswarm("workspace", "unpack", bag, "-o", unpacked)
    assert done.returncode == 0, done.stderr
    checked = ocrswarm("workspace", "validate", unpacked / "mets.xml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "valid" in checked.stdout


def test_init_refuses_a_folder_without_images(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no images here")
    done = ocrswarm("workspace", "init", tmp_path)
    assert done.returncode == 1
    assert done.stderr.startswith("error:")
    assert not (tmp_path / "mets.xml").exists()


def test_validate_reports_a_missing_file(image_dir: Callable[..., Path], tmp_path: Path) -> None:
    ws = Workspace.from_images(image_dir(2), tmp_path / "ws")
    ws.resolve(ws.mets.find_files(file_grp="OCR-D-IMG")[0]).unlink()
    done = ocrswarm("workspace", "validate", ws.mets_path)
    assert done.returncode == 1
    assert "invalid:" in done.stdout


def test_malformed_mets_is_a_clear_error(tmp_path: Path) -> None:
    mets = tmp_path / "mets.xml"
    mets.write_text("<mets:mets xmlns:mets='http://www.loc.gov/METS/'><unclosed>")
    done = ocrswarm("workspace", "info", mets)
    assert done.returncode == 1
    assert "error:" in done.stderr and "Traceback" not in done.stderr


def test_unpack_refuses_zip_slip_and_writes_nothing_outside(tmp_path: Path) -> None:
    bag = tmp_path / "evil.ocrd.zip"
    with zipfile.ZipFile(bag, "w") as archive:
        archive.writestr("bagit.txt", "BagIt-Version: 1.0\nTag-File-Character-Encoding: UTF-8\n")
        archive.writestr("../escaped.txt", "gotcha")
    before = sorted(p.name for p in tmp_path.iterdir())
    done = ocrswarm("workspace", "unpack", bag, "-o", tmp_path / "out")
    assert done.returncode == 1
    assert "error:" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert not (tmp_path.parent / "escaped.txt").exists()


def test_export_alto_hocr_text(image_dir: Callable[..., Path], tmp_path: Path) -> None:
    ws = Workspace.from_images(image_dir(2), tmp_path / "ws")
    for image in ws.mets.find_files(file_grp="OCR-D-IMG"):
        assert image.page_id is not None
        ws.add_file(
            page_to_bytes(PcGts.new(image.href, 1240, 1754)),
            file_grp="OCR-D-OCR",
            file_id=f"OCR-D-OCR_{image.page_id}",
            mimetype=MIMETYPE_PAGE,
            page_id=image.page_id,
            suffix=".xml",
        )
    ws.save()
    for fmt, group in (("alto", "OCR-D-ALTO"), ("hocr", "OCR-D-HOCR"), ("text", "OCR-D-TXT")):
        done = ocrswarm("export", ws.mets_path, "--format", fmt)
        assert done.returncode == 0, done.stderr
        files = Workspace.open(ws.mets_path).mets.find_files(file_grp=group)
        assert len(files) == 2
    alto = Workspace.open(ws.mets_path).mets.find_files(file_grp="OCR-D-ALTO")[0]
    root = etree.parse(str(ws.directory / alto.href)).getroot()
    assert root.tag.endswith("alto")
    again = ocrswarm("export", ws.mets_path, "--format", "alto")
    assert again.returncode == 1 and "--overwrite" in again.stderr
    assert ocrswarm("export", ws.mets_path, "--format", "alto", "--overwrite").returncode == 0
