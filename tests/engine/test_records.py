"""Records that travel between the store, workers and (later) queues and HTTP clients."""

from __future__ import annotations

import json
from pathlib import Path

from ocrswarm.engine.records import FileRef, TaskLease, TaskResult
from ocrswarm.processors.processor import OutputFile


def lease() -> TaskLease:
    return TaskLease(
        task_id=7,
        token="7.abc",
        job_id="job",
        workflow_job_id=None,
        executable="ocrd-swarm-recognize",
        parameters={"model": "deu", "tesseract_parameters": {"x": 1}},
        page_id="PHYS_0001",
        inputs=[FileRef("OCR-D-IMG", "IMG_1", "image/tiff", "OCR-D-IMG/1.tif", "PHYS_0001")],
        input_file_grps=("OCR-D-IMG",),
        output_file_grps=("OCR-D-OCR",),
        workspace_id="ws",
        workspace_dir=Path("/data/ws"),
        attempt=2,
        max_attempts=3,
        lease_until=123.5,
    )


def test_a_lease_survives_json() -> None:
    original = lease()
    assert TaskLease.from_dict(json.loads(json.dumps(original.to_dict()))) == original


def test_a_lease_becomes_a_page_job_with_paths() -> None:
    page_job = lease().page_job()
    assert page_job.workspace_dir == Path("/data/ws")
    assert [(f.file_grp, f.path) for f in page_job.inputs] == [
        ("OCR-D-IMG", Path("/data/ws/OCR-D-IMG/1.tif"))
    ]
    assert list(page_job.output_file_grps) == ["OCR-D-OCR"]


def test_a_result_from_processor_outputs_survives_json() -> None:
    output = OutputFile(
        "OCR-D-OCR", "OCR_1", "application/vnd.prima.page+xml", "OCR-D-OCR/1.xml", "PHYS_0001"
    )
    result = TaskResult.from_outputs(lease(), [output])
    assert result.outputs == [FileRef.from_output(output)]
    assert (result.task_id, result.token) == (7, "7.abc")
    assert TaskResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result
