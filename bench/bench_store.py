"""The store at scale: submit a 10,000-page × 3-step workflow, then claim and complete it all.

Prints one JSON object per database. Single-threaded, batches of 32 (one claim and one
complete transaction per batch), every completion recording one output file for the METS
writer and releasing the next step of its page. Run:
`.venv/bin/python bench/bench_store.py [--pages N] [--batch B] [--postgres URL]`
(--postgres defaults to $OCRSWARM_TEST_POSTGRES_URL; a scratch database is created on that
server and dropped afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from ocrswarm.engine.database import database_url
from ocrswarm.engine.records import FileRef, PageInputs, TaskResult
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.engine.workflow import parse_workflow

WORKFLOW = "dummy -I OCR-D-IMG -O A\ndummy -I A -O B\ndummy -I B -O C\n"


def pages(count: int) -> list[PageInputs]:
    result = []
    for number in range(1, count + 1):
        page_id = f"PHYS_{number:05d}"
        href = f"img/{number}.tif"
        image = FileRef("OCR-D-IMG", f"IMG_{number:05d}", "image/tiff", href, page_id)
        result.append(PageInputs(page_id, [image]))
    return result


def measure(url: str, page_count: int, batch: int) -> dict[str, Any]:
    with Store(url) as store:
        store.migrate()
        workspace_id = store.add_workspace(Path("/bench/ws/mets.xml"))
        steps = parse_workflow(WORKFLOW)
        page_list = pages(page_count)
        started = time.perf_counter()
        job = store.submit_workflow(workspace_id, steps, page_list)
        submit_seconds = time.perf_counter() - started

        claim_seconds = complete_seconds = 0.0
        tasks = 0
        started = time.perf_counter()
        while True:
            before = time.perf_counter()
            leases = store.claim("bench", limit=batch)
            claim_seconds += time.perf_counter() - before
            if not leases:
                break
            results = [
                TaskResult(
                    lease.task_id,
                    lease.token,
                    [
                        FileRef(
                            lease.output_file_grps[0],
                            f"{lease.output_file_grps[0]}_{lease.page_id}",
                            "application/vnd.prima.page+xml",
                            f"{lease.output_file_grps[0]}/{lease.page_id}.xml",
                            lease.page_id,
                        )
                    ],
                )
                for lease in leases
            ]
            before = time.perf_counter()
            store.complete(results)
            complete_seconds += time.perf_counter() - before
            tasks += len(leases)
        queue_seconds = time.perf_counter() - started

        before = time.perf_counter()
        progress = store.progress(job.id)
        progress_seconds = time.perf_counter() - before
        if progress.pages_done != page_count or tasks != 3 * page_count:
            raise SystemExit(f"incomplete: {progress}")
        before = time.perf_counter()
        registered = 0
        while pending := store.pending_registrations(workspace_id, 5000):
            store.mark_registered([r.id for r in pending])
            registered += len(pending)
        outbox_seconds = time.perf_counter() - before
        return {
            "database": store.dialect,
            "pages": page_count,
            "tasks": tasks,
            "batch": batch,
            "submit_seconds": round(submit_seconds, 3),
            "claim_complete_seconds": round(queue_seconds, 3),
            "tasks_per_second": round(tasks / queue_seconds),
            "pages_per_second_3_steps": round(page_count / queue_seconds),
            "claim_ms_per_batch": round(1000 * claim_seconds / (tasks / batch), 3),
            "complete_ms_per_batch": round(1000 * complete_seconds / (tasks / batch), 3),
            "progress_ms": round(1000 * progress_seconds, 2),
            "outbox_drain_seconds": round(outbox_seconds, 3),
            "registered": registered,
        }


@contextmanager
def scratch_postgres(server: str) -> Iterator[str]:
    admin_url = database_url(server).set(database="postgres")
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    name = f"ocrswarm_bench_{secrets.token_hex(4)}"
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--postgres", default=os.environ.get("OCRSWARM_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as folder:
        results.append(measure(sqlite_url(Path(folder) / "state.sqlite"), args.pages, args.batch))
    if args.postgres:
        with scratch_postgres(args.postgres) as url:
            results.append(measure(url, args.pages, args.batch))
    machine = {
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps({"machine": machine, "results": results}, indent=2))


if __name__ == "__main__":
    main()
