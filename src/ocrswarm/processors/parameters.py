"""Processor parameters: read them from `-p`/`-P`, check them against the tool's ocrd-tool.json.

Checking happens before any page is touched, and names every parameter at fault with what
it would accept, so a typo costs seconds rather than a failed run over a thousand pages.
Defaults are filled in (deep copies: a default `{}` is never shared between runs).
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from jsonschema import Draft201909Validator

from ocrswarm.errors import ExitCode, OcrswarmError, UsageError

# Keys of a parameter description that are not JSON Schema (or that we check ourselves).
_NOT_SCHEMA_KEYS = frozenset(
    {"description", "default", "required", "content-type", "cacheable", "format"}
)
_JSON_TYPE_NAMES = {
    "string": "a string",
    "number": "a number",
    "boolean": "a boolean (true or false)",
    "object": "a JSON object",
    "array": "a JSON array",
    "integer": "a whole number",
    "null": "null",
}
_COMMENT_LINE = re.compile(r"^\s*#.*$", re.MULTILINE)


class ParameterError(OcrswarmError):
    """Parameters that do not fit the tool: unknown name, wrong type, out of range, missing."""

    exit_code = ExitCode.FAILURE

    def __init__(self, executable: str, problems: Sequence[str]) -> None:
        self.executable = executable
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            message = f"{executable}: {self.problems[0]}"
        else:
            message = f"{executable}: {len(self.problems)} parameter problems:\n" + "\n".join(
                f"  - {problem}" for problem in self.problems
            )
        super().__init__(message)


def validate_parameters(tool: Mapping[str, Any], parameters: Mapping[str, Any]) -> dict[str, Any]:
    """`parameters` checked against `tool` (an ocrd-tool.json entry), with defaults filled in.

    Raises ParameterError listing every problem at once: unknown names (with the closest
    known one), missing required ones, wrong types, values out of range or not in the enum.
    """
    specs: Mapping[str, Mapping[str, Any]] = tool.get("parameters", {})
    problems = [_unknown_parameter(name, specs) for name in parameters if name not in specs]
    result: dict[str, Any] = {}
    for name, spec in specs.items():
        if name in parameters:
            value = copy.deepcopy(parameters[name])
            value_problems = _value_problems(name, spec, value)
            problems.extend(value_problems)
            if not value_problems:
                result[name] = _normalized(spec, value)
        elif "default" in spec:
            result[name] = _with_nested_defaults(spec, copy.deepcopy(spec["default"]))
        elif spec.get("required"):
            problems.append(f"parameter {name!r} is required: {spec.get('description', '')}")
    if problems:
        raise ParameterError(str(tool.get("executable", "processor")), problems)
    return result


def parse_parameter_args(
    p_values: Sequence[str],
    kv_pairs: Sequence[tuple[str, str]],
    *,
    resolve_preset: Callable[[str], Path | None] | None = None,
) -> dict[str, Any]:
    """The parameters given on a processor command line, merged as OCR-D/core does.

    Each `-p` value is a JSON object or the path of a file holding one (full-line `#`
    comments allowed); they are merged in order, later keys winning; `-P KEY VALUE` pairs
    then override, VALUE parsed as JSON when it is JSON and kept as a string otherwise.
    `resolve_preset` may map a `-p` name to a preset file (OCR-D looks them up like file
    parameters). Malformed arguments raise UsageError naming the argument.
    """
    merged: dict[str, Any] = {}
    for value in p_values:
        if value.strip():
            merged.update(_parse_p_value(value, resolve_preset))
    for key, raw in kv_pairs:
        merged[key] = _parse_override(raw)
    return merged


def _parse_p_value(
    value: str, resolve_preset: Callable[[str], Path | None] | None
) -> dict[str, Any]:
    text = value
    origin = f"-p {_abbreviated(value)}"
    what = "neither a parameter file nor a JSON object"
    if not value.lstrip().startswith("{"):
        path = (resolve_preset(value) if resolve_preset else None) or Path(value)
        if _is_file(path):
            origin, what = f"-p {value!r} (file {path})", "invalid JSON"
            try:
                text = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as error:
                raise UsageError(f"{origin}: cannot read parameter file: {error}") from error
    try:
        parsed = json.loads(_COMMENT_LINE.sub("", text))
    except json.JSONDecodeError as error:
        raise UsageError(
            f"{origin}: {what} ({error.msg} at line {error.lineno} column {error.colno})"
        ) from error
    if not isinstance(parsed, dict):
        raise UsageError(f"{origin}: parameters must be a JSON object, not {_json_kind(parsed)}")
    return parsed


def _parse_override(raw: str) -> Any:
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # e.g. a name too long for the file system: not a file we can read
        return False


def _unknown_parameter(name: str, specs: Mapping[str, Any]) -> str:
    known = sorted(specs)
    if not known:
        return f"unknown parameter {name!r}: this processor takes no parameters"
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return f"unknown parameter {name!r}: {hint}known parameters: {', '.join(known)}"


def _value_problems(name: str, spec: Mapping[str, Any], value: Any) -> list[str]:
    schema = {key: item for key, item in spec.items() if key not in _NOT_SCHEMA_KEYS}
    errors = sorted(
        Draft201909Validator(schema).iter_errors(value), key=lambda e: list(e.absolute_path)
    )
    problems = [_describe(name, error) for error in errors]
    if not problems and isinstance(value, float) and not math.isfinite(value):
        problems.append(f"parameter {name!r} must be a finite number; got {value}")
    elif not problems and _wants_integer(spec) and not float(value).is_integer():
        problems.append(f"parameter {name!r} must be a whole number; got {_show(value)}")
    return problems


def _describe(name: str, error: Any) -> str:
    where = name + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    got = _show(error.instance)
    kind, expected = error.validator, error.validator_value
    if kind == "type":
        hint = _quote_hint(expected, error.instance)
        return f"parameter {where!r} must be {_type_names(expected)}; got {got}{hint}"
    if kind == "enum":
        allowed = ", ".join(_show(option) for option in expected)
        close = difflib.get_close_matches(str(error.instance), [str(o) for o in expected], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"parameter {where!r} must be one of {allowed}; got {got}{hint}"
    bounds = {
        "minimum": ">=",
        "maximum": "<=",
        "exclusiveMinimum": ">",
        "exclusiveMaximum": "<",
    }
    if kind in bounds:
        return f"parameter {where!r} must be {bounds[kind]} {_show(expected)}; got {got}"
    return f"parameter {where!r}: {error.message}"


def _type_names(expected: str | Iterable[str]) -> str:
    names = [expected] if isinstance(expected, str) else list(expected)
    described = [_JSON_TYPE_NAMES.get(name, name) for name in names]
    if len(described) == 1:
        return described[0]
    return ", ".join(described[:-1]) + " or " + described[-1]


def _quote_hint(expected: str | Iterable[str], instance: Any) -> str:
    """`-P char_whitelist 0123` arrives as a number: tell the user how to keep it a string."""
    wants_string = expected == "string" or (not isinstance(expected, str) and "string" in expected)
    if wants_string and (isinstance(instance, bool | int | float) or instance is None):
        return f" (-P reads it as JSON; to pass a string, quote it: '\"{_show(instance)}\"')"
    return ""


def _wants_integer(spec: Mapping[str, Any]) -> bool:
    return spec.get("type") == "number" and spec.get("format") == "integer"


def _normalized(spec: Mapping[str, Any], value: Any) -> Any:
    """Whole numbers given as 300.0 become 300 where the tool wants an integer."""
    if _wants_integer(spec) and isinstance(value, float):
        return int(value)
    return _with_nested_defaults(spec, value)


def _with_nested_defaults(spec: Mapping[str, Any], value: Any) -> Any:
    """Fill defaults of an object parameter's declared properties, as OCR-D/core does."""
    properties = spec.get("properties")
    if isinstance(value, dict) and isinstance(properties, Mapping):
        for key, subspec in properties.items():
            if isinstance(subspec, Mapping):
                if key in value:
                    value[key] = _with_nested_defaults(subspec, value[key])
                elif "default" in subspec:
                    value[key] = _with_nested_defaults(subspec, copy.deepcopy(subspec["default"]))
    return value


def _abbreviated(value: str, limit: int = 80) -> str:
    return repr(value if len(value) <= limit else value[: limit - 1] + "…")


def _show(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _json_kind(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "null"
