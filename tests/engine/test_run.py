"""`ocrswarm run` end to end: real worker processes, real SQLite, real Tesseract, real kills.

The fake processors of fake_processors.py leave `started/<page>.<n>` markers in the
workspace, so a test can see which pages were (re)done, and by which process.
"""

from __future__ import annotations

import difflib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ocrswarm.engine.documenttext import write_document_text
from ocrswarm.engine.prepare import STATE_DIR
from ocrswarm.engine.records import Progress
from ocrswarm.engine.run import RunRequest, RunSummary, run_workflow
from ocrswarm.engine.states import State
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workflow import WorkflowStep, default_workflow, parse_tasks
from ocrswarm.errors import UsageError
from ocrswarm.formats.mets import Mets
from ocrswarm.formats.page import parse_page
from ocrswarm.formats.workspace import Workspace
from tests.conftest import REPO
from tests.engine.fake_processors import EXTRA_PROCESSORS
from tests.render import render_page

LINES = {
    1: ["Invoice number 4711 from Berlin", "Total amount due in March"],
    2: ["The quick brown fox jumps", "over the lazy dog again"],
    3: ["Seven ravens flew over Hamburg", "before the winter of 1879"],
}


@pytest.fixture(autouse=True)
def _extra_processors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OCRSWARM_EXTRA_PROCESSORS", EXTRA_PROCESSORS)
    monkeypatch.setenv("PYTHONPATH", str(REPO))


@pytest.fixture
def scans(tmp_path: Path) -> Path:
    """Three rendered pages with known text."""
    folder = tmp_path / "scans"
    for number, lines in LINES.items():
        render_page(folder / f"page_{number}.png", lines, size=(1240, 500), font_size=40)
    return folder


def sleep(seconds: float, output: str = "SLEPT") -> list[WorkflowStep]:
    return parse_tasks([f"test-sleep -I OCR-D-IMG -O {output} -P seconds {seconds}"])


def started(out: Path) -> dict[str, int]:
    """Page -> how many times a fake processor started it."""
    counts: dict[str, int] = {}
    for marker in (out / "started").glob("*.*"):
        page = marker.name.rsplit(".", 1)[0]
        counts[page] = counts.get(page, 0) + 1
    return counts


def registered(out: Path, file_grp: str) -> list[tuple[str, str | None]]:
    """(file ID, page) of every file of `file_grp` in the METS on disk, duplicates kept."""
    mets = Mets.read(out / "mets.xml")
    return [(f.id, f.page_id) for f in mets.files if f.file_grp == file_grp]


def run(scans: Path, out: Path, steps: list[WorkflowStep] | None, **options: Any) -> RunSummary:
    request = RunRequest(input=scans, output=out, steps=steps, **{"workers": 2, **options})
    return run_workflow(request)


# --- in-process runs ---------------------------------------------------------------------------


def test_real_ocr_end_to_end(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = run(scans, out, None)
    assert summary.exit_code == 0
    assert (summary.state, summary.pages_done, summary.pages_failed) == (State.SUCCESS, 3, 0)
    ws = Workspace.open(out / "mets.xml")
    assert ws.validate() == []
    for grp in ("OCR-D-OCR", "OCR-D-ALTO", "OCR-D-HOCR", "OCR-D-TXT"):
        assert sorted(f.page_id or "" for f in ws.mets.find_files(file_grp=grp)) == [
            "PHYS_0001",
            "PHYS_0002",
            "PHYS_0003",
        ]
    assert [a.name.split()[0] for a in ws.mets.agents[1:]] == [
        "ocrd-swarm-recognize",
        *["ocrd-swarm-export"] * 3,
    ]
    pages = (out / "text.txt").read_text().split("\f")
    assert summary.text_file == out / "text.txt"
    # Without a plain-text step, text.txt comes from the PAGE-XML, to the same effect.
    recognize_only = [
        step for step in default_workflow("eng") if "OCR-D-OCR" in step.output_file_grps
    ]
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    from_page = write_document_text(copy / "mets.xml", recognize_only, ws.mets.page_ids)
    assert from_page is not None and from_page.read_text() == (out / "text.txt").read_text()
    assert len(pages) == 3
    for number, text in enumerate(pages, start=1):
        expected = "\n".join(LINES[number])
        similarity = difflib.SequenceMatcher(
            None, " ".join(text.split()), " ".join(expected.split())
        )
        assert similarity.ratio() >= 0.95, (text, expected)


def test_the_same_run_again_redoes_nothing(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = run(scans, out, sleep(0))
    again = run(scans, out, sleep(0))
    assert again.resumed and again.workflow_job_id == first.workflow_job_id
    assert (again.state, again.pages_done, again.pages_done_now) == (State.SUCCESS, 3, 0)
    assert started(out) == {"PHYS_0001": 1, "PHYS_0002": 1, "PHYS_0003": 1}
    assert sorted(registered(out, "SLEPT")) == [
        ("SLEPT_PHYS_0001", "PHYS_0001"),
        ("SLEPT_PHYS_0002", "PHYS_0002"),
        ("SLEPT_PHYS_0003", "PHYS_0003"),
    ]


def test_a_page_that_always_fails_fails_after_its_attempts_and_others_go_on(
    scans: Path, tmp_path: Path
) -> None:
    steps = parse_tasks(
        [
            "test-fail -I OCR-D-IMG -O FIRST -P pages '[\"PHYS_0002\"]'",
            "test-sleep -I FIRST -O SECOND",
        ]
    )
    out = tmp_path / "out"
    summary = run(scans, out, steps, max_attempts=2)
    assert summary.exit_code == 1
    assert (summary.state, summary.pages_done, summary.pages_failed) == (State.FAILED, 2, 1)
    [failed] = summary.failed
    assert (failed.page_id, failed.executable, failed.attempts) == (
        "PHYS_0002",
        "ocrd-test-fail",
        2,
    )
    assert failed.error == "RuntimeError: this processor always fails on PHYS_0002"
    assert started(out)["PHYS_0002"] == 2
    assert sorted(page or "" for _, page in registered(out, "SECOND")) == ["PHYS_0001", "PHYS_0003"]
    assert summary.to_dict()["failed"] == [
        {
            "page_id": "PHYS_0002",
            "executable": "ocrd-test-fail",
            "error": "RuntimeError: this processor always fails on PHYS_0002",
            "attempts": 2,
        }
    ]


def test_a_corrupt_image_fails_its_page_with_a_clear_reason(scans: Path, tmp_path: Path) -> None:
    (scans / "page_2.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    steps = parse_tasks(["swarm-dummy -I OCR-D-IMG -O OCR-D-DUMMY"])
    summary = run(scans, tmp_path / "out", steps)
    assert summary.exit_code == 1
    assert (summary.pages_done, summary.pages_failed) == (2, 1)
    [failed] = summary.failed
    assert failed.page_id == "PHYS_0002"
    assert "page_2.png" in failed.error and failed.attempts == 1  # bad data: no retry
    assert any("page_2.png" in warning for warning in summary.warnings)


def test_a_segfault_costs_only_its_page(scans: Path, tmp_path: Path) -> None:
    steps = parse_tasks(["test-crash -I OCR-D-IMG -O OUT -P pages '[\"PHYS_0001\"]'"])
    summary = run(scans, tmp_path / "out", steps, max_attempts=2)
    assert (summary.pages_done, summary.pages_failed) == (2, 1)
    [failed] = summary.failed
    assert failed.error == "worker died with signal 11 (SIGSEGV) while processing PHYS_0001"
    assert failed.attempts == 2


def test_a_page_over_the_time_limit_is_killed_and_fails(scans: Path, tmp_path: Path) -> None:
    steps = parse_tasks(["test-sleep -I OCR-D-IMG -O OUT -P seconds 60"])
    summary = run(scans, tmp_path / "out", steps, max_attempts=1, page_timeout=0.5, workers=3)
    assert summary.pages_failed == 3
    assert {f.error for f in summary.failed} == {
        f"page took longer than 0.5 s; worker killed while processing {page}"
        for page in ("PHYS_0001", "PHYS_0002", "PHYS_0003")
    }


def test_cancel_stops_the_run_and_keeps_what_was_done(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    url = sqlite_url(out / STATE_DIR / "state.sqlite")
    job: dict[str, str] = {}

    def cancel_after_the_first_page(progress: Progress) -> None:
        if progress.pages_done >= 1 and "cancelled" not in job:
            with Store(url) as other:  # as the server would, from another connection
                other.cancel(job["id"])
            job["cancelled"] = "yes"

    request = RunRequest(scans, out, sleep(0.3), workers=1)
    summary = run_workflow(
        request,
        on_start=lambda s: job.update(id=s.workflow_job_id),
        on_progress=cancel_after_the_first_page,
    )
    assert summary.exit_code == 1
    assert summary.state == State.CANCELLED
    assert summary.pages_cancelled >= 1 and summary.pages_done >= 1
    assert summary.pages_done + summary.pages_cancelled == 3
    assert len(registered(out, "SLEPT")) == summary.pages_done


def test_failed_pages_are_retried_by_the_next_run(scans: Path, tmp_path: Path) -> None:
    steps = parse_tasks(
        ["test-fail -I OCR-D-IMG -O FIXED -P pages '[\"PHYS_0003\"]' -P unless_exists fixed"]
    )
    out = tmp_path / "out"
    first = run(scans, out, steps, max_attempts=1)
    assert first.exit_code == 1 and [f.page_id for f in first.failed] == ["PHYS_0003"]
    (out / "fixed").write_text("the user repaired the cause")
    second = run(scans, out, steps, max_attempts=1)
    assert second.resumed and second.exit_code == 0
    assert (second.pages_done, second.pages_failed, second.failed) == (3, 0, [])
    assert started(out) == {"PHYS_0001": 1, "PHYS_0002": 1, "PHYS_0003": 2}
    assert sorted(page or "" for _, page in registered(out, "FIXED")) == [
        "PHYS_0001",
        "PHYS_0002",
        "PHYS_0003",
    ]


def test_existing_output_of_another_run_needs_overwrite(scans: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(scans, out, sleep(0), page_selection="PHYS_0001")
    with pytest.raises(UsageError, match="--overwrite"):
        run(scans, out, sleep(0))
    summary = run(scans, out, sleep(0), overwrite=True)
    assert summary.pages_done == 3
    assert sorted(registered(out, "SLEPT")) == [
        ("SLEPT_PHYS_0001", "PHYS_0001"),
        ("SLEPT_PHYS_0002", "PHYS_0002"),
        ("SLEPT_PHYS_0003", "PHYS_0003"),
    ]


def test_pages_without_input_are_skipped_with_a_warning(scans: Path, tmp_path: Path) -> None:
    ws = Workspace.from_images(scans, tmp_path / "ws")
    ws.mets.add_page("PHYS_0004", order=4)
    ws.save()
    summary = run(ws.mets_path, ws.directory, sleep(0))
    assert summary.skipped_pages == ["PHYS_0004"]
    assert summary.pages_total == 3 and summary.exit_code == 0
    assert any("PHYS_0004" in warning for warning in summary.warnings)


# --- a METS whose images are not in OCR-D-IMG ------------------------------------------------

DUMMY = parse_tasks(["swarm-dummy -I OCR-D-IMG -O OCR-D-DUMMY"])


@pytest.fixture
def kant_in_max(shared_data: Path, tmp_path: Path) -> Path:
    """A copy of the real kant_aufklaerung_1784 workspace with its images in fileGrp MAX."""
    copy = tmp_path / "kant"
    shutil.copytree(shared_data / "kant_aufklaerung_1784" / "data", copy)
    for path in copy.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    mets = copy / "mets.xml"
    mets.write_text(mets.read_text().replace('USE="OCR-D-IMG"', 'USE="MAX"'))
    return mets


def two_image_file_grps(scans: Path, directory: Path) -> Workspace:
    """A workspace with each page's image in OCR-D-IMG-BIN and a copy in MAX; no OCR-D-IMG."""
    ws = Workspace.from_images(scans, directory, file_grp="OCR-D-IMG-BIN")
    (directory / "MAX").mkdir()
    for number, file in enumerate(ws.mets.find_files(file_grp="OCR-D-IMG-BIN"), start=1):
        shutil.copyfile(ws.resolve(file), directory / "MAX" / Path(file.href).name)
        href = f"MAX/{Path(file.href).name}"
        ws.mets.add_file("MAX", f"MAX_{number:04d}", href, file.mimetype, file.page_id)
    ws.save()
    return ws


def image_hrefs(mets_path: Path, file_grp: str) -> list[str]:
    """The image each PAGE of `file_grp` refers to, in page order."""
    ws = Workspace.open(mets_path)
    return [
        parse_page(ws.resolve(file)).page.image_filename
        for page_id in ws.mets.page_ids
        for file in ws.mets.find_files(file_grp=file_grp, page_id=page_id)
    ]


def test_a_mets_with_one_image_file_grp_but_no_ocr_d_img_reads_that_one(
    kant_in_max: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = run(kant_in_max, out, DUMMY)
    assert (summary.state, summary.pages_done, summary.pages_total) == (State.SUCCESS, 2, 2)
    assert any("reading the page images from MAX" in warning for warning in summary.warnings)
    assert image_hrefs(out / "mets.xml", "OCR-D-DUMMY") == [
        "OCR-D-IMG/INPUT_0017.tif",
        "OCR-D-IMG/INPUT_0020.tif",
    ]
    assert Workspace.open(out / "mets.xml").validate() == []
    again = run(kant_in_max, out, DUMMY)  # OCR-D-DUMMY does not count as a second choice
    assert again.resumed and again.workflow_job_id == summary.workflow_job_id


def test_input_file_grp_names_the_images_for_the_workflow(scans: Path, tmp_path: Path) -> None:
    ws = two_image_file_grps(scans, tmp_path / "ws")
    with pytest.raises(UsageError, match=r"several image fileGrps \(OCR-D-IMG-BIN, MAX\).*-I"):
        run(ws.mets_path, ws.directory, DUMMY)
    summary = run(ws.mets_path, ws.directory, DUMMY, image_file_grp="MAX")
    assert (summary.state, summary.pages_done, summary.warnings) == (State.SUCCESS, 3, [])
    assert image_hrefs(ws.mets_path, "OCR-D-DUMMY") == [f"MAX/page_{n}.png" for n in (1, 2, 3)]
    agent = Workspace.open(ws.mets_path).mets.agents[-1]
    assert ("input-file-grp", "MAX") in agent.notes


def test_input_file_grp_with_a_workflow_that_does_not_read_ocr_d_img_is_refused(
    scans: Path, tmp_path: Path
) -> None:
    ws = two_image_file_grps(scans, tmp_path / "ws")
    steps = parse_tasks(["swarm-dummy -I MAX -O OCR-D-DUMMY"])
    with pytest.raises(UsageError, match="reads MAX from the METS; name OCR-D-IMG-BIN in its -I"):
        run(ws.mets_path, ws.directory, steps, image_file_grp="OCR-D-IMG-BIN")
    assert not Workspace.open(ws.mets_path).mets.find_files(file_grp="OCR-D-DUMMY")


# --- the real command, killed for real -----------------------------------------------------


def command(scans: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "ocrswarm", "run", str(scans), "-o", str(out), "-j", "2", *extra]


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started_processes: list[subprocess.Popen[str]] = []
    yield started_processes
    for process in started_processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_until(condition: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie is gone too
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return True


def many_scans(tmp_path: Path, count: int) -> Path:
    folder = tmp_path / "many"
    for number in range(1, count + 1):
        render_page(folder / f"p{number}.png", [f"page {number}"], size=(200, 100), font_size=20)
    return folder


def test_kill_9_of_a_worker_mid_page_redoes_that_page_once(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    scans, out = many_scans(tmp_path, 4), tmp_path / "out"
    task = "test-sleep -I OCR-D-IMG -O SLEPT -P seconds 1"
    process = subprocess.Popen(command(scans, out, "-w", task), text=True)
    processes.append(process)
    marker = out / "started" / "PHYS_0002.1"
    wait_until(lambda: marker.exists() and bool(marker.read_text()))
    os.kill(int(marker.read_text()), signal.SIGKILL)
    assert process.wait(120) == 0
    counts = started(out)
    assert counts.pop("PHYS_0002") == 2
    assert set(counts.values()) == {1}
    assert sorted(registered(out, "SLEPT")) == [
        (f"SLEPT_PHYS_000{n}", f"PHYS_000{n}") for n in (1, 2, 3, 4)
    ]


def test_kill_9_of_the_whole_run_then_the_same_command_completes(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    scans, out = many_scans(tmp_path, 12), tmp_path / "out"
    argv = command(scans, out, "-w", "test-sleep -I OCR-D-IMG -O SLEPT -P seconds 0.3")
    process = subprocess.Popen(argv, text=True, stdout=subprocess.DEVNULL)
    processes.append(process)
    wait_until(lambda: len(registered(out, "SLEPT")) >= 2 if (out / "mets.xml").exists() else False)
    process.kill()
    process.wait()
    finished_before = {page for _, page in registered(out, "SLEPT") if page}
    workers = {int(p.read_text()) for p in (out / "started").iterdir() if p.read_text()}
    wait_until(lambda: all(gone(pid) for pid in workers), timeout=10)  # no orphans
    again = subprocess.run(argv, text=True, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert "(resumed)" in again.stdout
    files = registered(out, "SLEPT")
    assert sorted(files) == sorted(set(files))  # nothing listed twice
    assert {page for _, page in files} == {f"PHYS_{n:04d}" for n in range(1, 13)}
    counts = started(out)
    assert all(counts[page] == 1 for page in finished_before)  # no finished page redone
    assert Workspace.open(out / "mets.xml").validate() == []


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_gently_gives_back_the_leases_and_resumes(
    tmp_path: Path, processes: list[subprocess.Popen[str]], signum: int
) -> None:
    scans, out = many_scans(tmp_path, 6), tmp_path / "out"
    argv = command(scans, out, "-w", "test-sleep -I OCR-D-IMG -O SLEPT -P seconds 0.5")
    process = subprocess.Popen(argv, text=True, stderr=subprocess.PIPE, start_new_session=True)
    processes.append(process)
    wait_until(lambda: (out / "started" / "PHYS_0001.1").exists())
    os.killpg(process.pid, signum)  # to the whole group, workers too, as Ctrl-C does
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signum
    assert "Run the same command again to continue" in stderr
    with Store(sqlite_url(out / STATE_DIR / "state.sqlite")) as store:
        [job] = store.workflow_jobs()
        counts = store.progress(job.id).counts
    assert counts.get(State.RUNNING, 0) == 0  # every lease given back
    interrupted = started(out)
    assert set(interrupted.values()) == {1}  # the pages under way were finished, not killed
    again = subprocess.run(argv, text=True, capture_output=True, timeout=120)
    assert again.returncode == 0, again.stderr
    counts_after = started(out)
    assert all(counts_after[page] == 1 for page in interrupted)
    assert len(registered(out, "SLEPT")) == 6


def test_a_second_run_in_the_same_out_is_refused_while_the_first_runs(
    tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    scans, out = many_scans(tmp_path, 2), tmp_path / "out"
    argv = command(scans, out, "-w", "test-sleep -I OCR-D-IMG -O SLEPT -P seconds 5")
    processes.append(subprocess.Popen(argv, text=True))
    wait_until(lambda: (out / "started").exists())
    second = subprocess.run(argv, text=True, capture_output=True, timeout=60)
    assert second.returncode == 2
    assert "another ocrswarm run" in second.stderr
