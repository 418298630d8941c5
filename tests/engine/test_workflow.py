"""Workflows in OCR-D's task syntax: parsing, checking, the per-page DAG."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ocrswarm.engine.workflow import (
    WorkflowError,
    WorkflowStep,
    builtin_tool,
    default_workflow,
    format_workflow,
    mets_input_file_grps,
    parse_tasks,
    parse_workflow,
    step_predecessors,
    validate_steps,
    with_image_file_grp,
    workflow_fingerprint,
)


def test_ocrds_own_dummy_workflow(shared_spec: Path) -> None:
    steps = parse_workflow((shared_spec / "ocrd-core" / "dummy-workflow.txt").read_text())
    assert [(s.executable, s.input_file_grps, s.output_file_grps) for s in steps] == [
        ("ocrd-dummy", ("OCR-D-IMG",), ("OCR-D-DUMMY1",)),
        ("ocrd-dummy", ("OCR-D-DUMMY1",), ("OCR-D-DUMMY2",)),
        ("ocrd-dummy", ("OCR-D-DUMMY2",), ("OCR-D-DUMMY3",)),
    ]
    assert step_predecessors(steps) == [(), (0,), (1,)]


def test_comments_quotes_parameters_and_full_names(tmp_path: Path) -> None:
    preset = tmp_path / "preset.json"
    preset.write_text('{"psm": 6, "model": "eng"}')
    text = f"""
    # binarize first
    swarm-binarize -I OCR-D-IMG -O OCR-D-BIN -P k 0.3   # trailing comment

    ocrd-swarm-recognize -I OCR-D-BIN,OCR-D-IMG -O OCR-D-OCR \
        -p {preset} -P model 'deu+eng' -p '{{"oem": 1}}'
    """
    binarize, recognize = parse_workflow(text)
    assert binarize == WorkflowStep(
        "ocrd-swarm-binarize", ("OCR-D-IMG",), ("OCR-D-BIN",), {"k": 0.3}, line=3
    )
    assert recognize.executable == "ocrd-swarm-recognize"
    assert recognize.input_file_grps == ("OCR-D-BIN", "OCR-D-IMG")
    assert recognize.parameters == {"psm": 6, "model": "deu+eng", "oem": 1}
    assert recognize.line == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dummy -I A -O B\ndummy -I B -O C --overwrite", "line 2: unknown option '--overwrite'"),
        ("dummy -I A -O B extra", "line 1: unknown argument 'extra'"),
        ("dummy -O B", "line 1: dummy: no -I fileGrp given"),
        ("dummy -I A", "no -O fileGrp given"),
        ("dummy -I A -O", "line 1: -O needs a value"),
        ("dummy -I A -O B -P key", "-P needs KEY VALUE"),
        ("dummy -I 'A -O B", "line 1: cannot split"),
        ("dummy -I A,,C -O B", "empty fileGrp name"),
        ("dummy -I A,A -O B", "-I names A more than once"),
        ("dummy -I A -O B -p '{broken'", "line 1: -p"),
        ("-I A -O B", "starts with the processor name"),
        ("# only a comment\n\n", "no tasks"),
    ],
)
def test_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow(text)
    assert message in str(caught.value)


def test_the_error_carries_the_line_number() -> None:
    with pytest.raises(WorkflowError) as caught:
        parse_workflow("dummy -I A -O B\n\ndummy -I B -O C -x 1\n")
    assert caught.value.line == 3
    assert caught.value.exit_code == 2


def test_tasks_from_the_command_line() -> None:
    steps = parse_tasks(["dummy -I A -O B", "ocrd-dummy -I B -O C"])
    assert [s.executable for s in steps] == ["ocrd-dummy", "ocrd-dummy"]
    with pytest.raises(WorkflowError, match="task 2: unknown option"):
        parse_tasks(["dummy -I A -O B", "dummy -I B -O C -Z"])
    with pytest.raises(WorkflowError, match="task 1: empty task"):
        parse_tasks([" "])


def test_validation_canonicalises_and_fills_defaults() -> None:
    [step] = validate_steps(parse_workflow("dummy -I OCR-D-IMG -O OUT"))
    assert step.executable == "ocrd-swarm-dummy"
    assert step.parameters == builtin_defaults("ocrd-swarm-dummy")
    assert step.line == 1


def builtin_defaults(executable: str) -> dict[str, object]:
    tool = builtin_tool(executable)
    assert tool is not None
    return {name: spec["default"] for name, spec in tool["parameters"].items()}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("dummy -I A -O B\nno-such-tool -I B -O C", "line 2: ocrd-no-such-tool: unknown processor"),
        (
            "swarm-export -I A -O B -P format pdf",
            "line 1: ocrd-swarm-export: parameter 'format' must be one of",
        ),
        ("dummy -I A -O B\ndummy -I A -O B", "line 2: ocrd-dummy: fileGrp B is already produced"),
        (
            "dummy -I B -O C\ndummy -I A -O B",
            "line 1: ocrd-dummy: input fileGrp B is produced only later",
        ),
        ("dummy -I A -O A", "fileGrp A is both input and output"),
        (
            "dummy -I MISSING -O B",
            "input fileGrp MISSING is neither produced by an earlier step nor in the METS "
            "(its fileGrps: A)",
        ),
    ],
)
def test_validation_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(WorkflowError) as caught:
        validate_steps(parse_workflow(text), available_file_grps=["A"])
    assert message in str(caught.value)


def test_third_party_processors_through_known() -> None:
    tool = {
        "executable": "ocrd-cis-ocropy-binarize",
        "parameters": {"level": {"type": "string", "default": "page"}},
    }

    def known(executable: str) -> Mapping[str, Any] | None:
        return tool if executable == "ocrd-cis-ocropy-binarize" else None

    [step] = validate_steps(parse_workflow("cis-ocropy-binarize -I A -O B"), known)
    assert step.parameters == {"level": "page"}


def test_a_diamond_is_a_dag_per_page() -> None:
    steps = parse_workflow(
        "dummy -I IMG -O A\ndummy -I A -O B\ndummy -I A -O C\ndummy -I B,C,IMG -O D\n"
    )
    assert step_predecessors(steps) == [(), (0,), (0,), (1, 2)]
    assert mets_input_file_grps(steps) == ["IMG"]


def test_the_default_workflow_is_valid_and_recognises_then_exports() -> None:
    steps = validate_steps(default_workflow("deu"), available_file_grps=["OCR-D-IMG"])
    assert [s.output_file_grps for s in steps] == [
        ("OCR-D-OCR",),
        ("OCR-D-ALTO",),
        ("OCR-D-HOCR",),
        ("OCR-D-TXT",),
    ]
    assert steps[0].parameters["model"] == "deu"
    assert [s.parameters["format"] for s in steps[1:]] == ["alto", "hocr", "text"]
    assert step_predecessors(steps) == [(), (0,), (0,), (0,)]


def test_another_image_file_grp_replaces_only_what_is_read_from_the_mets() -> None:
    steps = parse_tasks(
        [
            "swarm-binarize -I OCR-D-IMG -O OCR-D-BIN",
            "swarm-dummy -I OCR-D-BIN,OCR-D-IMG -O OCR-D-DUMMY",
        ]
    )
    moved = with_image_file_grp(steps, "MAX")
    assert [(s.input_file_grps, s.output_file_grps) for s in moved] == [
        (("MAX",), ("OCR-D-BIN",)),
        (("OCR-D-BIN", "MAX"), ("OCR-D-DUMMY",)),
    ]
    assert mets_input_file_grps(with_image_file_grp(default_workflow("eng"), "MAX")) == ["MAX"]
    made_here = parse_tasks(["swarm-dummy -I MAX -O OCR-D-IMG", "swarm-dummy -I OCR-D-IMG -O B"])
    with pytest.raises(WorkflowError, match="reads MAX from the METS; name BIN in its -I"):
        with_image_file_grp(made_here, "BIN")


def test_formatted_workflows_parse_back() -> None:
    steps = validate_steps(default_workflow("script/Latin"))
    again = validate_steps(parse_workflow(format_workflow(steps)))
    assert [replace(s, line=None) for s in again] == steps
    assert (
        json.loads(format_workflow(steps).splitlines()[0].split(" -p ")[1].strip("'"))["model"]
        == "script/Latin"
    )


def test_the_fingerprint_follows_steps_parameters_and_pages() -> None:
    steps = parse_workflow("dummy -I A -O B")
    other = parse_workflow("dummy -I A -O B -P copy_files true")
    assert workflow_fingerprint(steps, ["P1", "P2"]) == workflow_fingerprint(
        parse_workflow("\n# same\ndummy  -I A  -O B"), ["P1", "P2"]
    )
    assert workflow_fingerprint(steps, ["P1", "P2"]) != workflow_fingerprint(steps, ["P1"])
    assert workflow_fingerprint(steps, ["P1"]) != workflow_fingerprint(other, ["P1"])
