"""METS at scale: build, save, open, look up and add at 10,000 pages x 3 fileGrps.

Prints one JSON object. OCR-D's own METS lookups cost 10-40 ms at 2,000-5,000 pages; ours
are dict accesses. Run: `.venv/bin/python bench/bench_mets.py [--pages N]`.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from ocrswarm.formats.mets import MIMETYPE_PAGE, Mets
from ocrswarm.formats.pageselect import select_pages

FILE_GROUPS = (
    ("OCR-D-IMG", "image/tiff", ".tif"),
    ("OCR-D-SEG", MIMETYPE_PAGE, ".xml"),
    ("OCR-D-OCR", MIMETYPE_PAGE, ".xml"),
)


def build(pages: int) -> Mets:
    mets = Mets.empty("urn:ocrswarm:bench")
    for number in range(1, pages + 1):
        page_id = f"PHYS_{number:04d}"
        mets.add_page(page_id, order=number, label=f"scan_{number}")
        for file_grp, mimetype, suffix in FILE_GROUPS:
            file_id = f"{file_grp}_{number:04d}"
            mets.add_file(file_grp, file_id, f"{file_grp}/{file_id}{suffix}", mimetype, page_id)
    return mets


def per_call_us(calls: list[Callable[[], object]]) -> dict[str, float]:
    """Median and 99th percentile of each call's own duration, in microseconds."""
    durations = []
    for call in calls:
        start = time.perf_counter_ns()
        call()
        durations.append((time.perf_counter_ns() - start) / 1000)
    durations.sort()
    return {
        "median_us": round(statistics.median(durations), 2),
        "p99_us": round(durations[int(len(durations) * 0.99)], 2),
    }


def seconds(action: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = action()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--lookups", type=int, default=10_000)
    args = parser.parse_args()
    rng = random.Random(42)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mets.xml"
        build_s, built = seconds(lambda: build(args.pages))
        assert isinstance(built, Mets)
        save_s, _ = seconds(lambda: built.save(path))
        open_s, opened = seconds(lambda: Mets.read(path))
        assert isinstance(opened, Mets)
        mets = opened
        page_ids = mets.page_ids
        sample = [rng.choice(page_ids) for _ in range(args.lookups)]
        find = per_call_us(
            [partial(mets.find_files, page_id=p, file_grp="OCR-D-SEG") for p in sample]
        )
        find_page = per_call_us([partial(mets.find_files, page_id=p) for p in sample])
        # PHYS_0042 -> OCR-D-OCR_0042
        get = per_call_us([partial(mets.get_file, f"OCR-D-OCR_{p[5:]}") for p in sample])
        targets = page_ids[: args.lookups]
        add = per_call_us(
            [
                partial(
                    mets.add_file,
                    "OCR-D-NEW",
                    f"OCR-D-NEW_{p[5:]}",
                    f"OCR-D-NEW/{p}.xml",
                    MIMETYPE_PAGE,
                    p,
                )
                for p in targets
            ]
        )
        remove = per_call_us([partial(mets.remove_file, f"OCR-D-NEW_{p[5:]}") for p in targets])
        select = per_call_us(
            [lambda: select_pages(f"{page_ids[10]}..{page_ids[-10]}", page_ids)] * 20
        )
        schema_s, errors = seconds(mets.validate_schema)
        result = {
            "pages": args.pages,
            "files": len(mets.files),
            "file_groups": len(FILE_GROUPS),
            "mets_bytes": path.stat().st_size,
            "build_s": round(build_s, 3),
            "save_s": round(save_s, 3),
            "build_and_save_s": round(build_s + save_s, 3),
            "open_s": round(open_s, 3),
            "find_by_page_and_file_grp": find,
            "find_by_page": find_page,
            "get_file_by_id": get,
            "add_file": add,
            "remove_file": remove,
            "select_pages_range": select,
            "validate_schema_s": round(schema_s, 3),
            "schema_valid": errors == [],
            "python": platform.python_version(),
            "machine": platform.machine(),
        }
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
