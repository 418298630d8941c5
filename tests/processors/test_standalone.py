"""The standalone runner: pages from the METS, outputs registered, the METS saved once."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import pytest

from ocrswarm.errors import MetsError, PageSelectionError
from ocrswarm.formats.mets import MIMETYPE_PAGE
from ocrswarm.formats.workspace import Workspace
from ocrswarm.processors.processor import OutputFile, PageJob, Processor, output_file_id
from ocrswarm.processors.standalone import (
    PageFailuresError,
    ProcessorRun,
    page_job,
    run_standalone,
)
from tests.render import render_page


class TextProcessor(Processor):
    """Writes one text file per page naming its inputs; fails on the pages it is told to."""

    executable = "ocrd-test-text"
    made: ClassVar[list[TextProcessor]] = []

    def __init__(self, parameters: Mapping[str, Any]) -> None:
        super().__init__(parameters)
        self.jobs: list[PageJob] = []
        self.closed = False
        TextProcessor.made.append(self)

    def process_page(self, job: PageJob) -> list[OutputFile]:
        self.jobs.append(job)
        if job.page_id in self.parameters.get("fail_on", ()):
            raise RuntimeError(f"cannot read {job.page_id}")
        file_grp = job.output_file_grps[0]
        content = f"{self.parameters.get('label', '')}:" + ",".join(i.file_id for i in job.inputs)
        return [
            job.write_output(
                content.encode(),
                file_grp=file_grp,
                file_id=output_file_id(file_grp, job.page_id),
                mimetype="text/plain",
                suffix=".txt",
            )
        ]

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def forget_processors() -> None:
    TextProcessor.made.clear()


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    scans = tmp_path / "scans"
    for n in range(1, 4):
        render_page(scans / f"page_{n}.png", [f"Page {n}"], size=(300, 200))
    return Workspace.from_images(scans, tmp_path / "ws")


def make_run(**changes: Any) -> ProcessorRun:
    settings: dict[str, Any] = {
        "executable": "ocrd-test-text",
        "version": "9.9",
        "step": "recognition/text-recognition",
        "input_file_grps": ("OCR-D-IMG",),
        "output_file_grps": ("OUT",),
        "parameters": {},
    }
    settings.update(changes)
    return ProcessorRun(**settings)


def run(workspace: Workspace, **changes: Any) -> Any:
    settings = make_run(**changes)
    return run_standalone(workspace, settings, lambda: TextProcessor(settings.parameters))


def output_text(workspace: Workspace, page_id: str, file_grp: str = "OUT") -> str:
    (file,) = workspace.mets.find_files(file_grp=file_grp, page_id=page_id)
    return workspace.resolve(file).read_text()


def test_every_page_is_processed_registered_and_saved_once(workspace: Workspace) -> None:
    report = run(workspace, parameters={"label": "x"})
    assert report.processed == ["PHYS_0001", "PHYS_0002", "PHYS_0003"]
    assert [file.id for file in report.registered] == [
        "OUT_PHYS_0001",
        "OUT_PHYS_0002",
        "OUT_PHYS_0003",
    ]
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    assert output_text(reread, "PHYS_0002") == "x:OCR-D-IMG_0002"
    (processor,) = TextProcessor.made
    assert processor.closed
    assert [job.page_id for job in processor.jobs] == report.processed


def test_the_run_is_recorded_as_an_agent(workspace: Workspace) -> None:
    run(workspace, parameters={"label": "ä"}, page_selection="PHYS_0001..PHYS_0002")
    agent = Workspace.open(workspace.mets_path).mets.agents[-1]
    assert agent.name == "ocrd-test-text v9.9"
    assert (agent.role, agent.otherrole) == ("OTHER", "recognition/text-recognition")
    assert (agent.type, agent.othertype) == ("OTHER", "SOFTWARE")
    assert dict(agent.notes) == {
        "input-file-grp": "OCR-D-IMG",
        "output-file-grp": "OUT",
        "parameter": '{"label": "ä"}',
        "page-id": "PHYS_0001..PHYS_0002",
    }


def test_a_failing_page_keeps_the_others_and_the_mets_valid(workspace: Workspace) -> None:
    with pytest.raises(PageFailuresError) as failure:
        run(workspace, parameters={"fail_on": ["PHYS_0002"]})
    assert "1 of 3 pages failed" in str(failure.value)
    assert "PHYS_0002: RuntimeError: cannot read PHYS_0002" in str(failure.value)
    assert failure.value.report.processed == ["PHYS_0001", "PHYS_0003"]
    reread = Workspace.open(workspace.mets_path)
    assert reread.validate() == []
    assert [file.page_id for file in reread.mets.find_files(file_grp="OUT")] == [
        "PHYS_0001",
        "PHYS_0003",
    ]
    assert reread.mets.agents[-1].name == "ocrd-test-text v9.9"
    assert TextProcessor.made[0].closed


def test_stop_on_error_ends_the_run_at_the_first_failure(workspace: Workspace) -> None:
    with pytest.raises(PageFailuresError) as failure:
        run(workspace, parameters={"fail_on": ["PHYS_0002"]}, stop_on_error=True)
    assert failure.value.report.processed == ["PHYS_0001"]
    assert [job.page_id for job in TextProcessor.made[0].jobs] == ["PHYS_0001", "PHYS_0002"]
    reread = Workspace.open(workspace.mets_path)
    assert [file.page_id for file in reread.mets.find_files(file_grp="OUT")] == ["PHYS_0001"]


def test_existing_output_is_refused_before_anything_happens(workspace: Workspace) -> None:
    run(workspace, page_selection="PHYS_0002")
    before = workspace.mets_path.read_bytes()
    with pytest.raises(MetsError, match=r"'OUT' already has files for 1 .*PHYS_0002.*--overwrite"):
        run(workspace)
    assert workspace.mets_path.read_bytes() == before
    assert len(TextProcessor.made) == 1  # the second processor was never made
    # Pages without output in OUT may still be processed into it.
    run(workspace, page_selection="PHYS_0001,PHYS_0003")
    assert len(Workspace.open(workspace.mets_path).mets.find_files(file_grp="OUT")) == 3


def test_overwrite_replaces_the_selected_pages_only(workspace: Workspace) -> None:
    run(workspace, parameters={"label": "old"})
    stray = workspace.directory / "OUT" / "stray.txt"
    stray.write_text("an old output under another name")
    workspace.mets.remove_file("OUT_PHYS_0001")
    workspace.mets.add_file("OUT", "OUT_STRAY", "OUT/stray.txt", "text/plain", "PHYS_0001")
    workspace.save()
    run(
        workspace,
        parameters={"label": "new"},
        page_selection="PHYS_0001..PHYS_0002",
        overwrite=True,
    )
    reread = Workspace.open(workspace.mets_path)
    assert output_text(reread, "PHYS_0001") == "new:OCR-D-IMG_0001"
    assert output_text(reread, "PHYS_0002") == "new:OCR-D-IMG_0002"
    assert output_text(reread, "PHYS_0003") == "old:OCR-D-IMG_0003"
    assert not stray.exists()  # replaced and no longer referenced: deleted after the save
    assert reread.validate() == []


def test_missing_input_group_and_bad_selection_change_nothing(workspace: Workspace) -> None:
    before = workspace.mets_path.read_bytes()
    with pytest.raises(MetsError, match=r"input fileGrp 'NOPE' not in .*its fileGrps: OCR-D-IMG"):
        run(workspace, input_file_grps=("NOPE",))
    with pytest.raises(PageSelectionError):
        run(workspace, page_selection="PHYS_0009")
    with pytest.raises(MetsError, match="invalid"):
        run(workspace, output_file_grps=("bad name",))
    assert workspace.mets_path.read_bytes() == before
    assert TextProcessor.made == []


def test_pages_without_input_in_the_first_group_are_skipped(workspace: Workspace) -> None:
    workspace.mets.remove_file("OCR-D-IMG_0002")
    report = run(workspace)
    assert report.processed == ["PHYS_0001", "PHYS_0003"]
    assert report.skipped == ["PHYS_0002"]
    workspace.mets.remove_file("OCR-D-IMG_0001")
    workspace.mets.remove_file("OCR-D-IMG_0003")
    with pytest.raises(MetsError, match="no file for the selected pages"):
        run(workspace, output_file_grps=("OUT2",))


def test_outputs_are_checked_before_any_is_registered(workspace: Workspace) -> None:
    class Stray(TextProcessor):
        def process_page(self, job: PageJob) -> list[OutputFile]:
            good = super().process_page(job)
            other = job.write_output(
                b"x",
                file_grp="ELSEWHERE",
                file_id="X_" + job.page_id,
                mimetype="text/plain",
                suffix=".txt",
            )
            return [*good, other]

    settings = make_run()
    with pytest.raises(PageFailuresError, match="'ELSEWHERE' is not an output fileGrp"):
        run_standalone(workspace, settings, lambda: Stray({}))
    reread = Workspace.open(workspace.mets_path)
    assert reread.mets.find_files(file_grp="OUT") == []
    assert reread.validate() == []


def test_page_job_lists_one_file_per_group_page_xml_first(workspace: Workspace) -> None:
    workspace.add_file(
        b"<PcGts/>",
        file_grp="MIXED",
        file_id="MIXED_IMG",
        mimetype="image/png",
        page_id="PHYS_0001",
        suffix=".png",
    )
    workspace.add_file(
        b"<PcGts/>",
        file_grp="MIXED",
        file_id="MIXED_PAGE",
        mimetype=MIMETYPE_PAGE,
        page_id="PHYS_0001",
    )
    job = page_job(workspace, "PHYS_0001", ["MIXED", "OCR-D-IMG", "EMPTY"], ["OUT"])
    assert [(i.file_grp, i.file_id, i.mimetype) for i in job.inputs] == [
        ("MIXED", "MIXED_PAGE", MIMETYPE_PAGE),
        ("OCR-D-IMG", "OCR-D-IMG_0001", "image/png"),
    ]
    assert job.inputs[1].path == (workspace.directory / "OCR-D-IMG" / "page_1.png").resolve()
    assert job.output_file_grps == ("OUT",)
