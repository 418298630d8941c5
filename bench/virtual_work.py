"""`ocrd-bench-sleep`: a processor whose work is only waiting, `seconds` per page.

With it the coordinator's scaling is measured apart from the CPU: 64 worker processes that
sleep 1 s per page can at best do 64 pages/s on any machine, so what is missing from that is
the orchestration's cost. bench_distributed.py registers it through
$OCRSWARM_EXTRA_PROCESSORS (`ocrd-bench-sleep=virtual_work:VirtualWork`, this folder on
PYTHONPATH).
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

from ocrswarm.processors.processor import OutputFile, PageJob, Processor, output_file_id

EXECUTABLE = "ocrd-bench-sleep"
REGISTRATION = f"{EXECUTABLE}=virtual_work:VirtualWork"


class VirtualWork(Processor):
    """Sleeps `seconds` per page, then writes one line of text as the page's output."""

    executable = EXECUTABLE
    ocrd_tool: ClassVar[dict[str, Any]] = {
        "executable": EXECUTABLE,
        "description": "virtual work: sleeps per page (benchmarks only)",
        "categories": ["Quality assurance"],
        "steps": ["preprocessing/optimization"],
        "input_file_grp_cardinality": 1,
        "output_file_grp_cardinality": 1,
        "parameters": {
            "seconds": {"type": "number", "default": 1, "description": "sleep per page"}
        },
    }

    def process_page(self, job: PageJob) -> list[OutputFile]:
        time.sleep(float(self.parameters.get("seconds", 1)))
        file_grp = job.output_file_grps[0]
        return [
            job.write_output(
                f"{job.page_id} slept in {os.getpid()}\n".encode(),
                file_grp=file_grp,
                file_id=output_file_id(file_grp, job.page_id),
                mimetype="text/plain",
                suffix=".txt",
            )
        ]
