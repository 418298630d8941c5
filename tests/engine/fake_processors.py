"""Processors that misbehave on purpose, for the engine's tests.

Worker processes find them through $OCRSWARM_EXTRA_PROCESSORS (see `EXTRA_PROCESSORS`).
Each leaves `started/<page>.<n>` (holding its pid) in the workspace when it starts a page
for the n-th time, and writes one small text file per page, so that what happened can be
read back: `<page> pid=<worker pid> instance=<id of the processor> omp=<OMP_THREAD_LIMIT>`.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Mapping
from typing import Any, ClassVar

from ocrswarm.processors.processor import OutputFile, PageJob, Processor, output_file_id

EXTRA_PROCESSORS = ",".join(
    f"{name}=tests.engine.fake_processors:{cls}"
    for name, cls in {
        "ocrd-test-sleep": "SleepProcessor",
        "ocrd-test-fail": "FailProcessor",
        "ocrd-test-crash": "CrashProcessor",
    }.items()
)


def _tool(executable: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "executable": executable,
        "description": "a test processor",
        "categories": ["Quality assurance"],
        "steps": ["preprocessing/optimization"],
        "input_file_grp_cardinality": 1,
        "output_file_grp_cardinality": 1,
        "parameters": dict(parameters),
    }


class _Recording(Processor):
    def process_page(self, job: PageJob) -> list[OutputFile]:
        started = job.workspace_dir / "started"
        started.mkdir(exist_ok=True)
        attempt = 1
        while (started / f"{job.page_id}.{attempt}").exists():
            attempt += 1
        (started / f"{job.page_id}.{attempt}").write_text(str(os.getpid()))
        self.before(job)
        file_grp = job.output_file_grps[0]
        line = (
            f"{job.page_id} pid={os.getpid()} instance={id(self)} "
            f"omp={os.environ.get('OMP_THREAD_LIMIT')}\n"
        )
        return [
            job.write_output(
                line.encode(),
                file_grp=file_grp,
                file_id=output_file_id(file_grp, job.page_id),
                mimetype="text/plain",
                suffix=".txt",
            )
        ]

    def before(self, job: PageJob) -> None:
        pass


class SleepProcessor(_Recording):
    """Sleeps `seconds` per page."""

    executable = "ocrd-test-sleep"
    ocrd_tool: ClassVar[dict[str, Any]] = _tool(
        executable, {"seconds": {"type": "number", "default": 0, "description": "per page"}}
    )

    def before(self, job: PageJob) -> None:
        time.sleep(float(self.parameters.get("seconds", 0)))


class FailProcessor(_Recording):
    """Raises on the pages in `pages` (all pages when empty), unless the workspace holds a
    file named `unless_exists` (the fix a user makes before retrying)."""

    executable = "ocrd-test-fail"
    ocrd_tool: ClassVar[dict[str, Any]] = _tool(
        executable,
        {
            "pages": {"type": "array", "default": [], "description": "pages to fail on"},
            "unless_exists": {"type": "string", "default": "", "description": "a file name"},
        },
    )

    def before(self, job: PageJob) -> None:
        pages = self.parameters.get("pages") or []
        fixed = self.parameters.get("unless_exists")
        if fixed and (job.workspace_dir / fixed).exists():
            return
        if not pages or job.page_id in pages:
            raise RuntimeError(f"this processor always fails on {job.page_id}")


class CrashProcessor(_Recording):
    """Kills its own process with `signal` on the pages in `pages`: a segfault, an OOM kill."""

    executable = "ocrd-test-crash"
    ocrd_tool: ClassVar[dict[str, Any]] = _tool(
        executable,
        {
            "pages": {"type": "array", "default": [], "description": "pages to crash on"},
            "signal": {"type": "number", "default": 11, "description": "signal number"},
        },
    )

    def before(self, job: PageJob) -> None:
        if job.page_id in (self.parameters.get("pages") or []):
            os.kill(os.getpid(), int(self.parameters.get("signal", signal.SIGSEGV)))
            time.sleep(10)
