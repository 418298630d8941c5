"""Recognition speed on one core: ocrd-swarm-recognize against the `tesseract` command.

The same page images, the same model file, one thread each (OMP_THREAD_LIMIT=1):
- ours: one RecognizeProcessor (model loaded once, as a worker does), `process_page` per
  page, from the image to a PAGE file with words, confidences and reading order;
- theirs: `tesseract IMAGE OUT -l MODEL --tessdata-dir DIR` per page, plain text out (its
  cheapest output), paying the model load on every call as every per-page run does.
Runs alternate page by page so background load hits both alike; each page is timed
`--repeat` times and the median kept. Prints one JSON object with both per-page times
(wall and CPU) and their ratio (ours / tesseract: <= 1 means ours is no slower).

Pages: the scans of ../shared/data (bebel_frau_1879 with `deu`, kant_aufklaerung_1784 with
`Fraktur`), where the model is installed. The tesseract half is skipped, with a message, when
Debian's `tesseract-ocr` is not installed.
Run: `.venv/bin/python bench/bench_recognize.py [--data DIR] [--repeat 3]`.
"""

from __future__ import annotations

import os

os.environ["OMP_THREAD_LIMIT"] = "1"  # before tesserocr is loaded: one core for both sides

import argparse
import json
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tesserocr  # type: ignore[import-untyped]

from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.processors.processor import InputFile, PageJob
from ocrswarm.processors.recognize import RecognizeProcessor
from ocrswarm.processors.tessdata import ModelNotFoundError, find_model

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Dataset:
    name: str
    images: str  # glob under the data directory
    model: str


DATASETS = (
    Dataset("bebel_frau_1879", "bebel_frau_1879/GT-PAGE/*.tif", "deu"),
    Dataset("kant_aufklaerung_1784", "kant_aufklaerung_1784/data/OCR-D-IMG/*.tif", "Fraktur"),
)


@dataclass(frozen=True)
class Timing:
    wall: float
    cpu: float


def default_data() -> Path:
    shared = os.environ.get("OCRSWARM_SHARED")
    return (Path(shared) if shared else REPO.parent / "shared") / "data"


def tesseract_command() -> tuple[str | None, str]:
    """The `tesseract` executable and its version, or None and why it cannot be used."""
    path = shutil.which("tesseract")
    if path is None:
        return None, "the `tesseract` command is not installed (apt-get install tesseract-ocr)"
    version = subprocess.run([path, "--version"], capture_output=True, text=True, check=False)
    return path, (version.stdout or version.stderr).splitlines()[0]


def time_ours(processor: RecognizeProcessor, workspace: Path, image: Path, out: str) -> Timing:
    file = InputFile("OCR-D-IMG", image.stem, "image/tiff", image)
    job = PageJob(workspace, image.stem, [file], [out])
    wall, cpu = time.perf_counter(), time.process_time()
    processor.process_page(job)
    return Timing(time.perf_counter() - wall, time.process_time() - cpu)


def time_tesseract(
    command: str, image: Path, model_dir: Path, languages: str, output: Path
) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = time.perf_counter()
    subprocess.run(
        [command, "--tessdata-dir", str(model_dir), str(image), str(output), "-l", languages],
        check=True,
        capture_output=True,
    )
    wall = time.perf_counter() - wall
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def median(timings: list[Timing]) -> Timing:
    return Timing(
        statistics.median(timing.wall for timing in timings),
        statistics.median(timing.cpu for timing in timings),
    )


def rounded(timing: Timing) -> dict[str, float]:
    return {"wall_seconds": round(timing.wall, 3), "cpu_seconds": round(timing.cpu, 3)}


def summary(per_page: list[Timing]) -> dict[str, float]:
    return {
        "wall_seconds_per_page": round(statistics.mean(t.wall for t in per_page), 3),
        "cpu_seconds_per_page": round(statistics.mean(t.cpu for t in per_page), 3),
    }


def measure(
    dataset: Dataset, images: list[Path], command: str | None, repeat: int
) -> dict[str, Any]:
    model_dir, languages = find_model(dataset.model)
    model = "+".join(languages)
    tool = tool_json("ocrd-swarm-recognize")
    with tempfile.TemporaryDirectory(prefix="ocrswarm-speed-") as scratch:
        workspace = Path(scratch)
        (workspace / "OCR-D-IMG").mkdir()
        copies = [Path(shutil.copy(image, workspace / "OCR-D-IMG")) for image in images]
        start = time.perf_counter()
        processor = RecognizeProcessor(validate_parameters(tool, {"model": dataset.model}))
        load = time.perf_counter() - start
        ours: list[Timing] = []
        theirs: list[Timing] = []
        pages = []
        try:
            time_ours(processor, workspace, copies[0], "WARM-UP")  # caches, not the model
            for image in copies:
                our_runs, their_runs = [], []
                for run in range(repeat):
                    if command is not None:
                        output = workspace / f"tesseract-{image.stem}-{run}"
                        their_runs.append(time_tesseract(command, image, model_dir, model, output))
                    our_runs.append(time_ours(processor, workspace, image, f"OCR-{run}"))
                ours.append(median(our_runs))
                page: dict[str, Any] = {"image": image.name, "ours": rounded(ours[-1])}
                if their_runs:
                    theirs.append(median(their_runs))
                    page["tesseract"] = rounded(theirs[-1])
                pages.append(page)
        finally:
            processor.close()
    result: dict[str, Any] = {
        "model": dataset.model,
        "model_file_dir": str(model_dir),
        "pages": len(images),
        "ours": {"model_load_seconds": round(load, 3), **summary(ours)},
        "per_page": pages,
    }
    if theirs:
        result["tesseract"] = summary(theirs)
        result["ratio_wall"] = round(
            result["ours"]["wall_seconds_per_page"] / result["tesseract"]["wall_seconds_per_page"],
            3,
        )
        result["ratio_cpu"] = round(
            result["ours"]["cpu_seconds_per_page"] / result["tesseract"]["cpu_seconds_per_page"], 3
        )
        result["ours_no_slower"] = result["ratio_wall"] <= 1.0
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="../shared/data")
    parser.add_argument("--repeat", type=int, default=3, help="runs per page (median kept)")
    parser.add_argument("--dataset", action="append", default=[], help="only these datasets")
    args = parser.parse_args()
    command, version = tesseract_command()
    report: dict[str, Any] = {
        "benchmark": "per-page recognition time on one core",
        "omp_thread_limit": os.environ["OMP_THREAD_LIMIT"],
        "ours_tesseract": tesserocr.tesseract_version().splitlines()[0],
        "tesseract_command": version,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "datasets": {},
    }
    if command is None:
        report["tesseract_skipped"] = version
    for dataset in DATASETS:
        if args.dataset and dataset.name not in args.dataset:
            continue
        images = sorted(args.data.glob(dataset.images))
        if not images:
            report["datasets"][dataset.name] = {"skipped": f"no {dataset.images} in {args.data}"}
            continue
        try:
            report["datasets"][dataset.name] = measure(dataset, images, command, args.repeat)
        except ModelNotFoundError as error:
            report["datasets"][dataset.name] = {"skipped": str(error)}
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
