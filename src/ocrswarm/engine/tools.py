"""Which processors a workflow may name, and how a worker gets each one's class.

Three kinds, tried in this order: the built-ins (and their aliases, such as `ocrd-dummy`);
in-process extras named in $OCRSWARM_EXTRA_PROCESSORS (tests, plugins); third-party `ocrd-*`
executables on PATH, run page by page in private one-page workspaces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ocrswarm import __version__
from ocrswarm.engine.metswriter import StepAgent
from ocrswarm.errors import OcrswarmError, UsageError
from ocrswarm.processors import registry
from ocrswarm.processors.ocrd_tool import executables as ocrd_tool_executables
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.processor import Processor


def tool_description(executable: str) -> Mapping[str, Any] | None:
    """The ocrd-tool.json entry of a processor, or None when there is no such processor.

    An extra processor describes itself in an `ocrd_tool` class attribute (none: it takes
    any parameters as they are).
    """
    try:
        return tool_json(executable)
    except UsageError:
        pass
    if executable in registry.extra_processors():
        cls = registry.processor_class(executable)
        described = getattr(cls, "ocrd_tool", None)
        return dict(described) if described else {"executable": executable, "steps": [""]}
    external = _external_tool(executable)
    return dict(external.ocrd_tool) if external else None


def tool_version(executable: str) -> str:
    """The version recorded in a step's mets:agent."""
    external = None if _is_in_process(executable) else _external_tool(executable)
    if external is None:
        return __version__
    from ocrswarm.processors.external import tool_version as external_version

    return external_version(external)


def processor_class(executable: str) -> type[Processor]:
    """The class a worker instantiates for `executable` (UsageError when there is none)."""
    try:
        return registry.processor_class(executable)
    except UsageError:
        tool = _external_tool(executable)
        if tool is None:
            raise
        from ocrswarm.processors.external import external_processor_class

        return external_processor_class(tool)


def _is_in_process(executable: str) -> bool:
    """Built-in or extra, known without importing its (maybe heavy) module."""
    if executable in registry.extra_processors():
        return True
    try:
        tool_json(executable)
    except UsageError:
        return False
    return True


def _external_tool(executable: str) -> Any:
    if not executable.startswith("ocrd-"):
        return None
    from ocrswarm.processors.external import discover_external_tools

    return discover_external_tools().get(executable)


def step_agent(
    executable: str,
    input_file_grps: Sequence[str],
    output_file_grps: Sequence[str],
    parameters: Mapping[str, Any],
    page_selection: str | None = None,
) -> StepAgent:
    """The mets:agent of one processing step: the tool's version, its first OCR-D step as
    the role, and the fileGrps, parameters and pages as notes."""
    tool: Mapping[str, Any] = tool_description(executable) or {}
    role = next(iter(tool.get("steps") or []), "") or "processing"
    return StepAgent.for_step(
        executable,
        tool_version(executable),
        str(role),
        input_file_grps,
        output_file_grps,
        parameters,
        page_selection,
    )


def available_executables() -> list[str]:
    """Every processor this machine runs: built-ins, extras and third-party `ocrd-*` tools on
    PATH (the queues a distributed worker consumes by default)."""
    names = {*ocrd_tool_executables(), *registry.extra_processors()}
    try:
        from ocrswarm.processors.external import discover_external_tools

        names.update(discover_external_tools())
    except OcrswarmError:
        pass
    return sorted(name for name in names if name.startswith("ocrd-"))
