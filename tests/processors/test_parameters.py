"""Parameters: -p/-P parsing as OCR-D/core does it, validation that names what is wrong."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ocrswarm.errors import ExitCode, UsageError
from ocrswarm.processors.ocrd_tool import executables, tool_json
from ocrswarm.processors.parameters import (
    ParameterError,
    parse_parameter_args,
    validate_parameters,
)
from tests.interop import conftest as interop

ocrd_bin = interop.ocrd_bin  # the real-OCR-D fixture, made visible to this module

SYNTHETIC_TOOL: dict[str, Any] = {
    "executable": "ocrd-test-tool",
    "parameters": {
        "model": {"type": "string", "required": True, "description": "the model to use"},
        "threshold": {
            "type": "number",
            "exclusiveMinimum": 0,
            "exclusiveMaximum": 1,
            "default": 0.5,
            "description": "strictly between 0 and 1",
        },
        "layout": {
            "type": "object",
            "description": "nested settings",
            "default": {},
            "additionalProperties": False,
            "properties": {
                "columns": {"type": "number", "format": "integer", "minimum": 1, "default": 1},
                "direction": {"type": "string", "enum": ["ltr", "rtl"], "default": "ltr"},
            },
        },
        "pages": {
            "type": "array",
            "items": {"type": "string"},
            "default": [],
            "description": "a list",
        },
    },
}


def problems_of(tool: dict[str, Any], parameters: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ParameterError) as caught:
        validate_parameters(tool, parameters)
    assert caught.value.exit_code == ExitCode.FAILURE
    assert str(tool["executable"]) in str(caught.value)
    return caught.value.problems


# -- validation -------------------------------------------------------------------------------


def test_defaults_are_filled_in_and_given_values_kept() -> None:
    tool = tool_json("ocrd-swarm-recognize")
    given = {"model": "deu+eng", "textequiv_level": "line", "dpi": 300}
    result = validate_parameters(tool, given)
    assert {key: result[key] for key in given} == given
    for name, spec in tool["parameters"].items():
        if name not in given:
            assert result[name] == spec["default"], name
    assert set(result) == set(tool["parameters"])


def test_a_mutable_default_is_never_shared() -> None:
    tool = tool_json("ocrd-swarm-recognize")
    validate_parameters(tool, {})["tesseract_parameters"]["tessedit_pageseg_mode"] = "7"
    assert validate_parameters(tool, {})["tesseract_parameters"] == {}


def test_input_is_not_modified() -> None:
    given = {"model": "m", "layout": {"columns": 2}}
    validate_parameters(SYNTHETIC_TOOL, given)
    assert given == {"model": "m", "layout": {"columns": 2}}


def test_unknown_name_suggests_the_closest_and_lists_all() -> None:
    (problem,) = problems_of(tool_json("ocrd-swarm-recognize"), {"modell": "deu"})
    assert "unknown parameter 'modell'" in problem
    assert "did you mean 'model'?" in problem
    assert "textequiv_level" in problem and "tesseract_parameters" in problem


def test_unknown_name_for_a_tool_without_parameters() -> None:
    (problem,) = problems_of({"executable": "ocrd-x", "parameters": {}}, {"a": 1})
    assert "takes no parameters" in problem


@pytest.mark.parametrize(
    ("parameters", "expected"),
    [
        ({"dpi": "300"}, "parameter 'dpi' must be a number; got \"300\""),
        ({"dpi": True}, "parameter 'dpi' must be a number; got true"),
        ({"overwrite_text": "yes"}, "parameter 'overwrite_text' must be a boolean"),
        ({"tesseract_parameters": []}, "parameter 'tesseract_parameters' must be a JSON object"),
        ({"model": None}, "parameter 'model' must be a string; got null"),
    ],
)
def test_wrong_type_names_the_parameter_and_the_type(
    parameters: dict[str, Any], expected: str
) -> None:
    (problem,) = problems_of(tool_json("ocrd-swarm-recognize"), parameters)
    assert expected in problem


def test_a_number_for_a_string_parameter_says_how_to_quote_it() -> None:
    (problem,) = problems_of(tool_json("ocrd-swarm-recognize"), {"char_whitelist": 12345})
    assert "must be a string; got 12345" in problem
    assert "'\"12345\"'" in problem


@pytest.mark.parametrize(
    ("executable", "parameters", "expected"),
    [
        ("ocrd-swarm-binarize", {"k": 1.5}, "parameter 'k' must be <= 1; got 1.5"),
        ("ocrd-swarm-binarize", {"k": -0.1}, "parameter 'k' must be >= 0; got -0.1"),
        ("ocrd-swarm-recognize", {"padding": -1}, "parameter 'padding' must be >= 0; got -1"),
        ("ocrd-swarm-deskew", {"max_angle": 90}, "parameter 'max_angle' must be <= 45; got 90"),
    ],
)
def test_out_of_range(executable: str, parameters: dict[str, Any], expected: str) -> None:
    (problem,) = problems_of(tool_json(executable), parameters)
    assert expected in problem


def test_exclusive_bounds() -> None:
    assert validate_parameters(SYNTHETIC_TOOL, {"model": "m", "threshold": 0.01})["threshold"]
    (problem,) = problems_of(SYNTHETIC_TOOL, {"model": "m", "threshold": 1})
    assert "parameter 'threshold' must be < 1; got 1" in problem
    (problem,) = problems_of(SYNTHETIC_TOOL, {"model": "m", "threshold": 0})
    assert "parameter 'threshold' must be > 0; got 0" in problem


def test_enum_lists_the_allowed_values_and_the_closest() -> None:
    (problem,) = problems_of(tool_json("ocrd-swarm-recognize"), {"textequiv_level": "lines"})
    assert 'parameter \'textequiv_level\' must be one of "region", "line", "word", "glyph"' in (
        problem
    )
    assert "got \"lines\" (did you mean 'line'?)" in problem
    (problem,) = problems_of(tool_json("ocrd-swarm-export"), {"format": "pdf"})
    assert '"alto", "hocr", "text"; got "pdf"' in problem


def test_integer_format_wants_whole_numbers_and_normalizes_them() -> None:
    tool = tool_json("ocrd-swarm-binarize")
    (problem,) = problems_of(tool, {"window_size": 30.5})
    assert "parameter 'window_size' must be a whole number; got 30.5" in problem
    result = validate_parameters(tool, {"window_size": 31.0})
    assert result["window_size"] == 31 and isinstance(result["window_size"], int)
    float_result = validate_parameters(tool, {"k": 0.25})  # format float: left alone
    assert float_result["k"] == 0.25


def test_not_a_number_is_not_a_number() -> None:
    tool = tool_json("ocrd-swarm-recognize")
    for raw in ("NaN", "Infinity"):
        parsed = parse_parameter_args([], [("dpi", raw)])
        (problem,) = problems_of(tool, parsed)
        assert "parameter 'dpi' must be a finite number" in problem


def test_required_parameter() -> None:
    (problem,) = problems_of(SYNTHETIC_TOOL, {})
    assert "parameter 'model' is required: the model to use" in problem
    assert validate_parameters(SYNTHETIC_TOOL, {"model": "m"})["model"] == "m"


def test_nested_object_defaults_and_errors() -> None:
    result = validate_parameters(SYNTHETIC_TOOL, {"model": "m", "layout": {"columns": 2}})
    assert result["layout"] == {"columns": 2, "direction": "ltr"}
    assert validate_parameters(SYNTHETIC_TOOL, {"model": "m"})["layout"] == {
        "columns": 1,
        "direction": "ltr",
    }
    problems = problems_of(
        SYNTHETIC_TOOL,
        {"model": "m", "layout": {"columns": 0, "direction": "up", "rows": 3}},
    )
    assert any("parameter 'layout':" in p and "'rows' was unexpected" in p for p in problems)
    assert any("parameter 'layout.columns' must be >= 1; got 0" in p for p in problems)
    assert any("parameter 'layout.direction' must be one of" in p for p in problems)


def test_array_items_are_checked_with_their_index() -> None:
    (problem,) = problems_of(SYNTHETIC_TOOL, {"model": "m", "pages": ["PHYS_0001", 2]})
    assert "parameter 'pages[1]' must be a string; got 2" in problem


def test_tesseract_parameters_take_scalars_only() -> None:
    tool = tool_json("ocrd-swarm-segment")
    good = {"textord_tabfind_vertical_text": 0, "textord_heavy_nr": "1", "x": True}
    assert validate_parameters(tool, {"tesseract_parameters": good})["tesseract_parameters"] == good
    (problem,) = problems_of(tool, {"tesseract_parameters": {"a": [1]}})
    assert "parameter 'tesseract_parameters.a' must be a string, a number or a boolean" in problem


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ParameterError) as caught:
        validate_parameters(
            tool_json("ocrd-swarm-binarize"), {"method": "niblack", "k": 2, "colour": 1}
        )
    assert len(caught.value.problems) == 3
    message = str(caught.value)
    assert message.startswith("ocrd-swarm-binarize: 3 parameter problems:")
    assert "'method'" in message and "'k'" in message and "'colour'" in message


# -- parsing -p and -P ----------------------------------------------------------------------


def test_p_values_merge_in_order_and_p_overrides_win(tmp_path: Path) -> None:
    preset = tmp_path / "preset.json"
    preset.write_text('# a preset\n{"model": "deu", "dpi": 300}\n  # trailing\n', "utf-8")
    result = parse_parameter_args(
        ['{"model": "eng", "padding": 2}', str(preset), "  "],
        [("padding", "4"), ("psm", "6"), ("padding", "5")],
    )
    assert result == {"model": "deu", "padding": 5, "dpi": 300, "psm": 6}


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("300", 300),
        ("0.5", 0.5),
        ("true", True),
        ("null", None),
        ("deu", "deu"),
        ("deu+eng", "deu+eng"),
        ("0123", "0123"),  # not JSON (leading zero), so it stays a string
        ('"0123"', "0123"),
        ('{"a": "1"}', {"a": "1"}),
        ("[1, 2]", [1, 2]),
        ("", ""),
    ],
)
def test_P_values_are_json_or_else_strings(raw: str, parsed: Any) -> None:
    assert parse_parameter_args([], [("x", raw)]) == {"x": parsed}


def test_no_arguments_give_no_parameters() -> None:
    assert parse_parameter_args([], []) == {}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{not json", "neither a parameter file nor a JSON object"),
        ("missing.json", "-p 'missing.json': neither a parameter file nor a JSON object"),
        ("[1, 2]", "parameters must be a JSON object, not an array"),
        ('"text"', "parameters must be a JSON object, not a string"),
        ("x" * 5000, "neither a parameter file nor a JSON object"),  # too long for a file name
    ],
)
def test_bad_p_value_is_a_usage_error_naming_it(value: str, expected: str) -> None:
    with pytest.raises(UsageError, match="-p") as caught:
        parse_parameter_args([value], [])
    assert expected in str(caught.value)
    assert len(str(caught.value)) < 200  # a long literal is abbreviated in the message


def test_p_file_that_is_not_json_or_not_utf8(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"a": 1,}', "utf-8")
    with pytest.raises(UsageError, match=r"broken\.json.*invalid JSON .*line 1 column 9"):
        parse_parameter_args([str(broken)], [])
    latin1 = tmp_path / "latin1.json"
    latin1.write_bytes('{"a": "ä"}'.encode("latin-1"))
    with pytest.raises(UsageError, match="cannot read parameter file"):
        parse_parameter_args([str(latin1)], [])


def test_presets_are_resolved_by_the_callback(tmp_path: Path) -> None:
    preset = tmp_path / "fraktur.json"
    preset.write_text('{"model": "Fraktur"}', "utf-8")
    asked: list[str] = []

    def resolve(name: str) -> Path | None:
        asked.append(name)
        return preset if name == "fraktur.json" else None

    assert parse_parameter_args(["fraktur.json"], [], resolve_preset=resolve) == {
        "model": "Fraktur"
    }
    assert parse_parameter_args(['{"model": "eng"}'], [], resolve_preset=resolve) == {
        "model": "eng"
    }
    assert asked == ["fraktur.json"]  # a JSON literal is never looked up as a file


# -- the same answers as OCR-D/core -----------------------------------------------------------

CASES: list[tuple[str, list[str], list[tuple[str, str]]]] = [
    (name, [], []) for name in sorted(set(executables()))
] + [
    ("ocrd-swarm-recognize", ['{"model": "deu", "dpi": 300}'], [("textequiv_level", "line")]),
    ("ocrd-swarm-recognize", [], [("tesseract_parameters", '{"x": "1"}'), ("psm", "6")]),
    ("ocrd-swarm-binarize", ['{"method": "otsu"}', '{"k": 0.2}'], [("method", "sauvola")]),
    ("ocrd-swarm-export", [], [("format", "pdf")]),
    ("ocrd-swarm-binarize", [], [("k", "2")]),
    ("ocrd-swarm-deskew", [], [("operation_level", "line")]),
    ("ocrd-swarm-dummy", [], [("copy_file", "true")]),
    ("ocrd-swarm-segment", [], [("dpi", '"300"')]),
]

OCRD_SCRIPT = """
import json, sys
from ocrd_utils import parse_json_string_or_file, set_json_key_value_overrides
from ocrd_validators import ParameterValidator
answers = []
for tool, p_values, kv_pairs in json.load(sys.stdin):
    params = parse_json_string_or_file(*p_values)
    set_json_key_value_overrides(params, *kv_pairs)
    report = ParameterValidator(tool).validate(params)
    answers.append(params if report.is_valid else None)
print(json.dumps(answers))
"""


@pytest.mark.interop
def test_ocrd_core_parses_and_validates_alike(ocrd_bin: Path) -> None:
    """OCR-D/core's own parameter code, run on the same arguments, agrees with ours."""
    cases = [(tool_json(name), p, kv) for name, p, kv in CASES]
    done = subprocess.run(
        [str(ocrd_bin.parent / "python"), "-c", OCRD_SCRIPT],
        input=json.dumps(cases),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    theirs = json.loads(done.stdout)
    ours: list[dict[str, Any] | None] = []
    for tool, p_values, kv_pairs in cases:
        try:
            ours.append(validate_parameters(tool, parse_parameter_args(p_values, kv_pairs)))
        except ParameterError:
            ours.append(None)
    assert ours == theirs
    assert ours.count(None) == 5  # the invalid cases really are invalid
