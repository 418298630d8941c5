"""The shipped ocrd-tool.json: which processors we have and what they accept.

The document is read once from the package (it never changes while we run) and handed out
as deep copies, so no caller can change what the next one sees. It is checked against a copy
of OCR-D's ocrd_tool schema shipped beside it, because the project must not need the spec
folder at run time.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from importlib import resources
from typing import Any

from jsonschema import Draft201909Validator

from ocrswarm.errors import NotFoundError

# Names under which a tool is also offered, for drop-in compatibility with OCR-D/core.
TOOL_ALIASES: dict[str, str] = {"ocrd-dummy": "ocrd-swarm-dummy"}

# The usual input and output fileGrp of each tool, for help texts and default workflows.
# Not in ocrd-tool.json: OCR-D deprecated `input_file_grp`/`output_file_grp` there, and its
# validator reports a document that still has them as invalid.
SUGGESTED_FILE_GRPS: dict[str, tuple[str, str]] = {
    "ocrd-swarm-dummy": ("OCR-D-IMG", "OCR-D-DUMMY"),
    "ocrd-swarm-binarize": ("OCR-D-IMG", "OCR-D-BIN"),
    "ocrd-swarm-deskew": ("OCR-D-BIN", "OCR-D-DESKEW"),
    "ocrd-swarm-segment": ("OCR-D-DESKEW", "OCR-D-SEG"),
    "ocrd-swarm-recognize": ("OCR-D-SEG", "OCR-D-OCR"),
    "ocrd-swarm-export": ("OCR-D-OCR", "OCR-D-ALTO"),
}


def _read_package_json(name: str) -> dict[str, Any]:
    text = resources.files(__package__).joinpath(name).read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


@functools.cache
def _ocrd_tool() -> dict[str, Any]:
    return _read_package_json("ocrd-tool.json")


@functools.cache
def _schema_validator() -> Draft201909Validator:
    # OCR-D/core validates ocrd-tool.json with draft 2019-09; so do we.
    return Draft201909Validator(_read_package_json("ocrd_tool.schema.json"))


def load_ocrd_tool() -> dict[str, Any]:
    """The whole shipped ocrd-tool.json (a copy: change it freely)."""
    return copy.deepcopy(_ocrd_tool())


def executables() -> list[str]:
    """The executables of all built-in tools, sorted (aliases not included)."""
    return sorted(_ocrd_tool()["tools"])


def canonical_executable(executable: str) -> str:
    """The built-in tool `executable` names, following aliases; NotFoundError when there is none."""
    name = TOOL_ALIASES.get(executable, executable)
    if name not in _ocrd_tool()["tools"]:
        known = ", ".join([*executables(), *(f"{a} (= {t})" for a, t in TOOL_ALIASES.items())])
        raise NotFoundError(f"unknown processor {executable!r}; known processors: {known}")
    return name


def tool_json(executable: str) -> dict[str, Any]:
    """The ocrd-tool.json entry of one tool (a copy); an alias gives the tool it stands for."""
    return copy.deepcopy(_ocrd_tool()["tools"][canonical_executable(executable)])


def validate_ocrd_tool(document: Mapping[str, Any]) -> list[str]:
    """Every way `document` breaks the ocrd_tool schema or its conventions; empty when valid.

    Beyond the schema: each tool's `executable` must equal its key, and each parameter needs
    a `default` or `required: true` (the schema states this only in a comment).
    """
    problems = [
        f"{_json_path(error.absolute_path)}: {error.message}"
        for error in _schema_validator().iter_errors(document)
    ]
    tools = document.get("tools")
    if isinstance(tools, Mapping):
        for key, tool in tools.items():
            if isinstance(tool, Mapping):
                problems.extend(_convention_problems(key, tool))
    return sorted(problems)


def _convention_problems(key: str, tool: Mapping[str, Any]) -> list[str]:
    problems = []
    if "executable" in tool and tool["executable"] != key:
        problems.append(f"tools.{key}.executable: {tool['executable']!r} differs from the key")
    parameters = tool.get("parameters", {})
    if isinstance(parameters, Mapping):
        for name, spec in parameters.items():
            if isinstance(spec, Mapping) and "default" not in spec and not spec.get("required"):
                problems.append(
                    f"tools.{key}.parameters.{name}: needs a 'default' or 'required': true"
                )
    return problems


def _json_path(path: Any) -> str:
    return ".".join(str(part) for part in path) or "(document)"
