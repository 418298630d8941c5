"""Orchestration overhead: small pages through ocrd-swarm-dummy with the embedded store.

A workspace of N tiny pages is made first (not timed); then a fresh process runs
`run_workflow` on it in place, timed: submission, claims, the workers, the completions, the
METS writer's saves, to the final METS. Reported per run: pages/s and the peak RSS of that
process, the coordinator (the workers are processes of their own, about 40 MiB each): its
whole life counts, planning and submission included; and its CPU time, the orchestration's
cost, which other load on the machine inflates far less than the pages/s. `from_images` is
`ocrswarm run SCANS -o OUT` as a user types it: the same process also makes the workspace.
OCR-D's `ocrd process dummy` does 63 pages/s on the same 2-core machine.

Run: `.venv/bin/python bench/bench_engine.py [--pages 10000] [-j 2]`; prints one JSON object.
`--pages 1000` and `--pages 10000` side by side show whether the coordinator's memory grows
with the pages (`coordinator_peak_rss_mib` of the same configuration).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from ocrswarm.engine.run import RunRequest, run_workflow
from ocrswarm.engine.workflow import WorkflowStep
from ocrswarm.formats.workspace import Workspace

ONE_STEP = [WorkflowStep("ocrd-swarm-dummy", ("OCR-D-IMG",), ("OCR-D-D1",))]
THREE_STEPS = [
    *ONE_STEP,
    WorkflowStep("ocrd-swarm-dummy", ("OCR-D-D1",), ("OCR-D-D2",)),
    WorkflowStep("ocrd-swarm-dummy", ("OCR-D-D2",), ("OCR-D-D3",)),
]


def small_pages(folder: Path, count: int) -> Path:
    """`count` hard links to one small PNG: the pages differ only in name."""
    scans = folder / "scans"
    scans.mkdir()
    first = scans / "page_1.png"
    Image.new("L", (200, 300), 255).save(first, dpi=(300, 300))
    for number in range(2, count + 1):
        os.link(first, scans / f"page_{number}.png")
    return scans


def measure(
    source: Path, pages: int, steps: int, workers: int, output: Path | None = None
) -> dict[str, object]:
    """One run on `source` (a METS, worked on in place, or a folder of images made into the
    workspace `output`), in this process (call it in a fresh one)."""
    request = RunRequest(
        input=source,
        output=output,
        steps=ONE_STEP if steps == 1 else THREE_STEPS,
        workers=workers,
        write_text=False,
    )
    started = time.perf_counter()
    summary = run_workflow(request)
    seconds = time.perf_counter() - started
    if summary.pages_done != pages:
        raise SystemExit(f"only {summary.pages_done} of {pages} pages done: {summary.failed}")
    return {
        "pages": pages,
        "steps": steps,
        "workers": workers,
        "page_tasks": pages * steps,
        "seconds": round(seconds, 3),
        "pages_per_second": round(pages / seconds, 1),
        "page_tasks_per_second": round(pages * steps / seconds, 1),
        "coordinator_peak_rss_mib": round(peak_rss_mib(), 1),
        "coordinator_cpu_seconds": round(cpu_seconds(), 2),
    }


def cpu_seconds() -> float:
    """This process's CPU time (user + system): the orchestration's cost, which a busy
    machine inflates far less than the wall-clock time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def peak_rss_mib() -> float:
    """This process's peak resident memory: Linux's VmHWM, since ru_maxrss starts a new
    process at its parent's peak."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def in_fresh_process(
    pages: int, steps: int, workers: int, *, from_images: bool = False
) -> dict[str, object]:
    """Make the workspace here (or only the images, `from_images`), run and measure in a
    new process."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        made_at = time.perf_counter()
        scans = small_pages(Path(tmp), pages)
        if from_images:
            source, output = scans, Path(tmp) / "out"
            mets_path = output / "mets.xml"
        else:
            source = mets_path = Workspace.from_images(scans, Path(tmp) / "ws").mets_path
            output = None
        preparation = time.perf_counter() - made_at
        one = f"{source},{pages},{steps},{workers}" + (f",{output}" if output else "")
        command = [sys.executable, __file__, "--one", one]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        measured: dict[str, object] = json.loads(result.stdout)
        registered = len(Workspace.open(mets_path).mets.files) - pages
    measured["files_registered"] = registered
    if not from_images:
        measured["workspace_init_seconds"] = round(preparation, 3)
    return measured


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("-j", "--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--one", help=argparse.SUPPRESS)  # mets,pages,steps,workers: measure
    args = parser.parse_args()
    if args.one:
        source, pages, steps, workers, *output = args.one.split(",")
        target = Path(output[0]) if output else None
        print(json.dumps(measure(Path(source), int(pages), int(steps), int(workers), target)))
        return
    runs = [
        in_fresh_process(args.pages, 1, args.workers),
        in_fresh_process(args.pages, 3, args.workers),
        in_fresh_process(max(args.pages // 10, 1), 1, args.workers),
        in_fresh_process(args.pages, 1, args.workers, from_images=True),
    ]
    report = {
        "benchmark": "engine orchestration (ocrd-swarm-dummy, embedded SQLite store)",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "targets": {"one_step_pages_per_second": 1000, "three_steps_pages_per_second": 400},
        "one_step": runs[0],
        "three_steps": runs[1],
        "coordinator_peak_rss_mib": {
            str(runs[2]["pages"]): runs[2]["coordinator_peak_rss_mib"],
            str(runs[0]["pages"]): runs[0]["coordinator_peak_rss_mib"],
        },
        "smaller_run": runs[2],
        "from_images": runs[3],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
