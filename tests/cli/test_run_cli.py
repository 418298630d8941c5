"""`ocrswarm run` as a user runs it: exit codes, the summary, --json, usage errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from ocrswarm.formats.workspace import Workspace
from tests.conftest import REPO
from tests.engine.fake_processors import EXTRA_PROCESSORS

SAMPLES = REPO / "samples" / "pages"
DUMMY = "swarm-dummy -I OCR-D-IMG -O OCR-D-DUMMY"


def ocrswarm(*args: str | Path) -> subprocess.CompletedProcess[str]:
    environment = {
        **os.environ,
        "OCRSWARM_EXTRA_PROCESSORS": EXTRA_PROCESSORS,
        "PYTHONPATH": str(REPO),
    }
    return subprocess.run(
        [sys.executable, "-m", "ocrswarm", "run", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
        env=environment,
    )


def test_the_readme_command_reads_the_sample_pages(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = ocrswarm(SAMPLES, "-o", out, "-g", "PHYS_0001")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{out / 'mets.xml'}: 1 of 1 pages done, 0 failed")
    assert f"text: {out / 'text.txt'}" in done.stdout
    assert "Four score and seven years ago" in (out / "text.txt").read_text()
    assert done.stderr == ""  # no progress bar when stderr is not a terminal


def test_json_summary(image_dir: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = ocrswarm(image_dir(3), "-o", out, "-w", DUMMY, "--json", "-j", "2")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["mets"] == str(out / "mets.xml")
    assert summary["state"] == "SUCCESS"
    assert summary["pages"] == {
        "total": 3,
        "done": 3,
        "failed": 0,
        "cancelled": 0,
        "pending": 0,
        "skipped": [],
    }
    assert summary["failed"] == [] and not summary["resumed"] and not summary["interrupted"]
    assert summary["text_file"] == str(out / "text.txt")
    assert len(Workspace.open(out / "mets.xml").mets.find_files(file_grp="OCR-D-DUMMY")) == 3
    again = json.loads(ocrswarm(image_dir(3), "-o", out, "-w", DUMMY, "--json").stdout)
    assert again["resumed"] and again["workflow_job_id"] == summary["workflow_job_id"]


def test_failed_pages_exit_1_and_are_listed_with_their_reason(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    task = """test-fail -I OCR-D-IMG -O BROKEN -P pages '["PHYS_0002"]'"""
    done = ocrswarm(image_dir(3), "-o", tmp_path / "out", "-w", task, "--max-attempts", "1")
    assert done.returncode == 1
    assert "2 of 3 pages done, 1 failed" in done.stdout
    assert (
        "  PHYS_0002 (ocrd-test-fail, 1 attempts): "
        "RuntimeError: this processor always fails on PHYS_0002"
    ) in done.stderr
    as_json = ocrswarm(image_dir(3), "-o", tmp_path / "out", "-w", task, "--json")
    assert as_json.returncode == 1
    [failed] = json.loads(as_json.stdout)["failed"]
    assert failed["page_id"] == "PHYS_0002"


def test_a_workflow_file_in_ocrd_process_syntax(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    workflow = tmp_path / "workflow.txt"
    workflow.write_text(
        "# two steps, connected by their fileGrps\n"
        "swarm-dummy -I OCR-D-IMG -O FIRST\n"
        "\n"
        "ocrd-swarm-dummy -I FIRST -O SECOND\n"
    )
    out = tmp_path / "out"
    done = ocrswarm(image_dir(2), "-o", out, "-w", workflow)
    assert done.returncode == 0, done.stderr
    mets = Workspace.open(out / "mets.xml").mets
    assert len(mets.find_files(file_grp="SECOND")) == 2
    assert [a.otherrole for a in mets.agents[1:]] == ["preprocessing/optimization"] * 2


def test_a_mets_is_worked_on_in_place(image_dir: Callable[..., Path], tmp_path: Path) -> None:
    ws = Workspace.from_images(image_dir(2), tmp_path / "ws")
    done = ocrswarm(ws.mets_path, "-w", DUMMY)
    assert done.returncode == 0, done.stderr
    assert len(Workspace.open(ws.mets_path).mets.find_files(file_grp="OCR-D-DUMMY")) == 2


def test_input_file_grp_names_where_a_mets_keeps_its_images(
    image_dir: Callable[..., Path], tmp_path: Path
) -> None:
    ws = Workspace.from_images(image_dir(2), tmp_path / "ws", file_grp="OCR-D-IMG-BIN")
    ws.mets.add_file("MAX", "MAX_0001", "OCR-D-IMG-BIN/page_1.png", "image/png", "PHYS_0001")
    ws.save()
    guessed = ocrswarm(ws.mets_path, "-g", "PHYS_0001")
    assert guessed.returncode == 2
    assert "several image fileGrps (OCR-D-IMG-BIN, MAX)" in guessed.stderr
    assert "-I GRP" in guessed.stderr
    done = ocrswarm(ws.mets_path, "-I", "OCR-D-IMG-BIN", "-g", "PHYS_0001", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["pages"]["done"] == 1
    assert "Page 1 of the sample" in (ws.directory / "text.txt").read_text()
    [ocr] = Workspace.open(ws.mets_path).mets.find_files(file_grp="OCR-D-OCR")
    assert ocr.page_id == "PHYS_0001"


def test_usage_errors_exit_2(image_dir: Callable[..., Path], tmp_path: Path) -> None:
    scans = image_dir(1)
    no_out = ocrswarm(scans)
    assert no_out.returncode == 2 and "-o OUT" in no_out.stderr
    both = ocrswarm(scans, "-o", tmp_path / "a", "-w", DUMMY, "--model", "deu")
    assert both.returncode == 2 and "--model" in both.stderr
    unknown = ocrswarm(scans, "-o", tmp_path / "b", "-w", "no-such-tool -I OCR-D-IMG -O X")
    assert unknown.returncode == 2 and "unknown processor 'ocrd-no-such-tool'" in unknown.stderr
    missing = ocrswarm(scans, "-o", tmp_path / "c", "-w", "swarm-dummy -I NOPE -O X")
    assert missing.returncode == 2 and "NOPE" in missing.stderr


def test_an_unknown_model_is_named(image_dir: Callable[..., Path], tmp_path: Path) -> None:
    done = ocrswarm(image_dir(1), "-o", tmp_path / "out", "--model", "klingon", "--json")
    assert done.returncode != 0
    assert "klingon" in done.stdout + done.stderr
