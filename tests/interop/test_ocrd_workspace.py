"""What we write passes the real OCR-D validators (ocrd workspace validate, ocrd zip validate)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ocrswarm.formats.exports import export_workspace
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.ocrdzip import pack_workspace, unpack_bag
from ocrswarm.formats.page import PcGts, page_to_bytes
from ocrswarm.formats.workspace import Workspace
from tests.interop.conftest import run_ocrd


def assert_valid_workspace(ocrd_bin: Path, mets: Path) -> None:
    done = run_ocrd(ocrd_bin, "workspace", "-m", str(mets), "validate", cwd=mets.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'valid="true"' in done.stdout, done.stdout


def test_workspace_from_images_is_valid_for_ocrd(
    ocrd_bin: Path, image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    workspace = Workspace.from_images(image_dir(3), tmp_path / "ws")
    assert_valid_workspace(ocrd_bin, workspace.mets_path)


def test_workspace_with_page_and_exports_is_valid_for_ocrd(
    ocrd_bin: Path, image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    workspace = Workspace.from_images(image_dir(2), tmp_path / "ws")
    for image in workspace.mets.find_files(file_grp="OCR-D-IMG"):
        assert image.page_id is not None
        pcgts = PcGts.new(image.href, 1240, 1754)
        pcgts.pcgts_id = f"OCR-D-SEG_{image.page_id}"  # OCR-D: pcGtsId equals the METS file ID
        workspace.add_file(
            page_to_bytes(pcgts),
            file_grp="OCR-D-SEG",
            file_id=pcgts.pcgts_id,
            mimetype=MIMETYPE_PAGE,
            page_id=image.page_id,
            suffix=".xml",
        )
    workspace.save()
    export_workspace(workspace, "alto")
    assert_valid_workspace(ocrd_bin, workspace.mets_path)


def test_our_bag_is_valid_for_ocrd_and_unpacks_valid(
    ocrd_bin: Path, image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    workspace = Workspace.from_images(image_dir(3), tmp_path / "ws")
    bag = pack_workspace(workspace.mets_path, tmp_path / "ws.ocrd.zip")
    done = run_ocrd(ocrd_bin, "zip", "validate", str(bag))
    assert done.returncode == 0, done.stdout + done.stderr
    mets = unpack_bag(bag, tmp_path / "unpacked")
    assert_valid_workspace(ocrd_bin, mets)


def test_ocrswarm_run_output_is_valid_for_ocrd(ocrd_bin: Path, tmp_path: Path) -> None:
    """Real OCR of the shipped sample pages, then OCR-D's validator on the whole workspace:
    METS, PAGE (schema, coordinates, text consistency) and every file it references."""
    out = tmp_path / "out"
    samples = Path(__file__).resolve().parents[2] / "samples" / "pages"
    done = subprocess.run(
        [sys.executable, "-m", "ocrswarm", "run", str(samples), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "Four score and seven years ago" in (out / "text.txt").read_text()
    assert_valid_workspace(ocrd_bin, out / "mets.xml")
