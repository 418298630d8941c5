"""The shipped ocrd-tool.json: valid for OCR-D's schema (and OCR-D's own validator), complete."""

from __future__ import annotations

import json
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from ocrswarm.errors import ExitCode, UsageError
from ocrswarm.processors.ocrd_tool import (
    SUGGESTED_FILE_GRPS,
    TOOL_ALIASES,
    canonical_executable,
    executables,
    load_ocrd_tool,
    tool_json,
    validate_ocrd_tool,
)
from ocrswarm.processors.parameters import validate_parameters
from tests.conftest import require_or_skip
from tests.interop import conftest as interop

ocrd_bin = interop.ocrd_bin  # the real-OCR-D fixture, made visible to this module

BUILT_IN = {
    "ocrd-swarm-dummy",
    "ocrd-swarm-binarize",
    "ocrd-swarm-deskew",
    "ocrd-swarm-segment",
    "ocrd-swarm-recognize",
    "ocrd-swarm-export",
}


def shipped_schema() -> dict[str, Any]:
    text = resources.files("ocrswarm.processors").joinpath("ocrd_tool.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def load_yaml(path: Path) -> Any:
    """Parse YAML with PyYAML here, or else with the OCR-D environment's Python (which has it)."""
    try:
        import yaml
    except ImportError:
        python = Path(interop.os.environ.get("OCRSWARM_OCRD_VENV", interop.REPO / ".venv-ocrd"))
        python = python / "bin" / "python"
        if not python.is_file():
            require_or_skip("no YAML parser: neither PyYAML here nor the OCR-D environment")
        script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"
        done = subprocess.run(
            [str(python), "-c", script, str(path)], capture_output=True, text=True, check=True
        )
        return json.loads(done.stdout)
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def test_shipped_document_is_valid() -> None:
    assert validate_ocrd_tool(load_ocrd_tool()) == []


def test_one_entry_per_built_in_tool() -> None:
    document = load_ocrd_tool()
    assert set(document["tools"]) == BUILT_IN == set(SUGGESTED_FILE_GRPS)
    assert executables() == sorted(BUILT_IN)
    assert document["version"] == "0.1.0"
    for name, tool in document["tools"].items():
        assert tool["executable"] == name
        assert tool["steps"] and tool["categories"] and tool["description"]
        assert "input_file_grp" not in tool  # deprecated: OCR-D's validator rejects it
        assert SUGGESTED_FILE_GRPS[name][0].startswith("OCR-D-")


def test_shipped_schema_is_ocrds_json_schema(shared_spec: Path) -> None:
    original = json.loads((shared_spec / "ocrd_tool.schema.json").read_text(encoding="utf-8"))
    assert shipped_schema() == original


def test_shipped_schema_is_ocrds_yaml_schema(shared_spec: Path) -> None:
    assert shipped_schema() == load_yaml(shared_spec / "ocrd_tool.schema.yml")


def test_every_default_is_valid_and_filled_in() -> None:
    for name in executables():
        tool = tool_json(name)
        declared = {key: spec["default"] for key, spec in tool["parameters"].items()}
        assert validate_parameters(tool, {}) == declared, name


@pytest.mark.parametrize(
    ("break_it", "expected"),
    [
        (lambda d: d.pop("git_url"), "'git_url' is a required property"),
        (lambda d: d.update(version="1.0"), "version: '1.0' does not match"),
        (lambda d: d["tools"]["ocrd-swarm-dummy"].pop("steps"), "'steps' is a required"),
        (
            lambda d: d["tools"]["ocrd-swarm-export"]["steps"].append("postprocessing/magic"),
            "tools.ocrd-swarm-export.steps.1: 'postprocessing/magic' is not one of",
        ),
        (
            lambda d: d["tools"]["ocrd-swarm-binarize"]["parameters"]["k"].update(type="float"),
            "tools.ocrd-swarm-binarize.parameters.k.type: 'float' is not one of",
        ),
        (
            lambda d: d["tools"]["ocrd-swarm-binarize"]["parameters"]["k"].pop("default"),
            "tools.ocrd-swarm-binarize.parameters.k: needs a 'default' or 'required': true",
        ),
        (
            lambda d: d["tools"]["ocrd-swarm-deskew"].update(executable="ocrd-other"),
            "tools.ocrd-swarm-deskew.executable: 'ocrd-other' differs from the key",
        ),
        (lambda d: d["tools"].update({"swarm-x": {}}), "'swarm-x' does not match any"),
    ],
)
def test_validator_names_what_is_wrong(break_it: Any, expected: str) -> None:
    document = load_ocrd_tool()
    break_it(document)
    problems = validate_ocrd_tool(document)
    assert any(expected in problem for problem in problems), problems


def test_alias_gives_the_dummy() -> None:
    assert TOOL_ALIASES == {"ocrd-dummy": "ocrd-swarm-dummy"}
    assert canonical_executable("ocrd-dummy") == "ocrd-swarm-dummy"
    assert tool_json("ocrd-dummy") == tool_json("ocrd-swarm-dummy")
    assert "copy_files" in tool_json("ocrd-dummy")["parameters"]  # as in OCR-D's ocrd-dummy


def test_unknown_tool_is_a_usage_error_listing_the_known_ones() -> None:
    with pytest.raises(UsageError) as caught:
        tool_json("ocrd-swarm-ocr")
    message = str(caught.value)
    assert "'ocrd-swarm-ocr'" in message
    assert all(name in message for name in BUILT_IN | {"ocrd-dummy"})
    assert caught.value.exit_code == ExitCode.USAGE


def test_callers_get_copies() -> None:
    tool_json("ocrd-swarm-recognize")["parameters"]["model"]["default"] = "xxx"
    load_ocrd_tool()["tools"].clear()
    assert tool_json("ocrd-swarm-recognize")["parameters"]["model"]["default"] == "eng"
    assert set(load_ocrd_tool()["tools"]) == BUILT_IN


@pytest.mark.interop
def test_ocrds_own_validator_accepts_it(ocrd_bin: Path, tmp_path: Path) -> None:
    path = tmp_path / "ocrd-tool.json"
    path.write_text(json.dumps(load_ocrd_tool()), encoding="utf-8")
    done = interop.run_ocrd(ocrd_bin, "ocrd-tool", str(path), "validate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert 'valid="true"' in done.stdout
    listed = interop.run_ocrd(ocrd_bin, "ocrd-tool", str(path), "list-tools")
    assert set(listed.stdout.split()) == BUILT_IN
