"""Workflows in OCR-D's task syntax: parse them, check them, and find each page's DAG.

A workflow is a list of processor steps, one per line as `ocrd process` takes them:
`NAME -I IN -O OUT [-p JSON|FILE] [-P KEY VALUE]…`. Steps are connected through fileGrp
names only: a step reads what earlier steps write. That connection is the per-page DAG the
scheduler follows, so page 7 may be at step 3 while page 900 is still at step 1.
"""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from ocrswarm.errors import OcrswarmError, UsageError
from ocrswarm.formats.workspace import IMAGE_FILE_GRP
from ocrswarm.processors.ocrd_tool import tool_json
from ocrswarm.processors.parameters import (
    ParameterError,
    parse_parameter_args,
    validate_parameters,
)

_OPTION_NAMES = {
    "-I": "-I",
    "--input-file-grp": "-I",
    "-O": "-O",
    "--output-file-grp": "-O",
    "-p": "-p",
    "--parameter": "-p",
    "-P": "-P",
    "--parameter-override": "-P",
}


@dataclass(frozen=True)
class WorkflowStep:
    """One processor call of a workflow; `line` is where it was written (for messages)."""

    executable: str
    input_file_grps: tuple[str, ...]
    output_file_grps: tuple[str, ...]
    parameters: Mapping[str, Any] = field(default_factory=dict)
    line: int | None = None

    def to_task(self) -> str:
        """The step in task syntax, as `ocrd process` takes it (name without `ocrd-`)."""
        name = self.executable.removeprefix("ocrd-")
        words = [name, "-I", ",".join(self.input_file_grps), "-O", ",".join(self.output_file_grps)]
        if self.parameters:
            words += ["-p", json.dumps(self.parameters, sort_keys=True, separators=(",", ":"))]
        return shlex.join(words)


class WorkflowError(UsageError):
    """A workflow that cannot run; the message starts with the line (or task) at fault."""

    def __init__(self, message: str, line: int | None = None, *, where: str = "line") -> None:
        self.line = line
        super().__init__(f"{where} {line}: {message}" if line is not None else message)


def parse_workflow(text: str) -> list[WorkflowStep]:
    """Parse a workflow file: one task per line, blank lines and `#` comments ignored."""
    steps = []
    for number, line in enumerate(text.splitlines(), start=1):
        step = _parse_task(line, number, "line")
        if step is not None:
            steps.append(step)
    if not steps:
        raise WorkflowError("the workflow has no tasks")
    return steps


def parse_tasks(tasks: Sequence[str]) -> list[WorkflowStep]:
    """Parse tasks given one per argument (`ocrswarm run -w 'dummy -I A -O B' …`)."""
    steps = []
    for number, task in enumerate(tasks, start=1):
        step = _parse_task(task, number, "task")
        if step is None:
            raise WorkflowError("empty task", number, where="task")
        steps.append(step)
    if not steps:
        raise WorkflowError("no tasks given")
    return steps


def _parse_task(text: str, number: int, where: str) -> WorkflowStep | None:
    def error(message: str) -> WorkflowError:
        return WorkflowError(message, number, where=where)

    try:
        words = shlex.split(text, comments=True)
    except ValueError as failure:
        raise error(f"cannot split {text.strip()!r} into words: {failure}") from failure
    if not words:
        return None
    name, rest = words[0], words[1:]
    if name.startswith("-"):
        raise error(f"a task starts with the processor name, not the option {name!r}")
    inputs: list[str] = []
    outputs: list[str] = []
    p_values: list[str] = []
    overrides: list[tuple[str, str]] = []
    position = 0
    while position < len(rest):
        word = rest[position]
        option = _OPTION_NAMES.get(word)
        if option is None:
            known = ", ".join(sorted(set(_OPTION_NAMES.values())))
            what = "option" if word.startswith("-") else "argument"
            raise error(f"unknown {what} {word!r} (a task takes {known})")
        arity = 2 if option == "-P" else 1
        values = rest[position + 1 : position + 1 + arity]
        if len(values) < arity:
            raise error(f"{word} needs {'KEY VALUE' if arity == 2 else 'a value'}")
        if option in ("-I", "-O"):
            (inputs if option == "-I" else outputs).extend(_file_grps(values[0], word, error))
        elif option == "-p":
            p_values.append(values[0])
        else:
            overrides.append((values[0], values[1]))
        position += 1 + arity
    for option, grps in (("-I", inputs), ("-O", outputs)):
        if not grps:
            raise error(f"{name}: no {option} fileGrp given")
        duplicates = sorted({grp for grp in grps if grps.count(grp) > 1})
        if duplicates:
            raise error(f"{option} names {', '.join(duplicates)} more than once")
    try:
        parameters = parse_parameter_args(p_values, overrides)
    except UsageError as failure:
        raise error(str(failure)) from failure
    executable = name if name.startswith("ocrd-") else f"ocrd-{name}"
    return WorkflowStep(executable, tuple(inputs), tuple(outputs), parameters, number)


def _file_grps(value: str, option: str, error: Callable[[str], WorkflowError]) -> list[str]:
    grps = value.split(",")
    if any(not grp.strip() or grp != grp.strip() for grp in grps):
        raise error(f"{option} {value!r}: empty fileGrp name or stray spaces")
    return grps


def builtin_tool(executable: str) -> Mapping[str, Any] | None:
    """The ocrd-tool.json entry of a built-in processor (aliases too), or None."""
    try:
        return tool_json(executable)
    except UsageError:
        return None


def validate_steps(
    steps: Sequence[WorkflowStep],
    known: Callable[[str], Mapping[str, Any] | None] = builtin_tool,
    *,
    available_file_grps: Collection[str] | None = None,
) -> list[WorkflowStep]:
    """The steps checked and completed: canonical executables, parameters with defaults.

    `known` gives a processor's ocrd-tool.json entry (None: no such processor). Each
    output fileGrp must come from one step only, and each input from an earlier step or,
    when `available_file_grps` (the METS's fileGrps) is given, from the METS.
    """
    producer: dict[str, WorkflowStep] = {}
    for step in steps:
        for grp in step.output_file_grps:
            if grp in producer:
                raise _step_error(
                    step, f"fileGrp {grp} is already produced by {_at(producer[grp])}"
                )
            producer[grp] = step
    checked = []
    produced_so_far: set[str] = set()
    for step in steps:
        tool = known(step.executable)
        if tool is None:
            raise _step_error(step, f"unknown processor {step.executable!r}")
        try:
            parameters = validate_parameters(tool, step.parameters)
        except ParameterError as failure:  # its message names the executable already
            raise _step_error(step, "; ".join(failure.problems)) from failure
        except OcrswarmError as failure:
            raise _step_error(step, str(failure)) from failure
        for grp in step.input_file_grps:
            if grp in step.output_file_grps:
                raise _step_error(step, f"fileGrp {grp} is both input and output")
            if grp in produced_so_far:
                continue
            if grp in producer:
                raise _step_error(
                    step, f"input fileGrp {grp} is produced only later, by {_at(producer[grp])}"
                )
            if available_file_grps is not None and grp not in available_file_grps:
                have = ", ".join(sorted(available_file_grps)) or "none"
                raise _step_error(
                    step,
                    f"input fileGrp {grp} is neither produced by an earlier step nor in the "
                    f"METS (its fileGrps: {have})",
                )
        produced_so_far.update(step.output_file_grps)
        executable = str(tool.get("executable", step.executable))
        checked.append(replace(step, executable=executable, parameters=parameters))
    return checked


def _at(step: WorkflowStep) -> str:
    return f"line {step.line}" if step.line is not None else step.executable


def _step_error(step: WorkflowStep, message: str) -> WorkflowError:
    return WorkflowError(f"{step.executable}: {message}", step.line)


def step_predecessors(steps: Sequence[WorkflowStep]) -> list[tuple[int, ...]]:
    """For each step, the indexes of the earlier steps that produce its inputs."""
    producer: dict[str, int] = {}
    result = []
    for index, step in enumerate(steps):
        result.append(
            tuple(sorted({producer[grp] for grp in step.input_file_grps if grp in producer}))
        )
        for grp in step.output_file_grps:
            producer.setdefault(grp, index)
    return result


def mets_input_file_grps(steps: Sequence[WorkflowStep]) -> list[str]:
    """The input fileGrps no step produces: what the workflow reads from the METS, in order."""
    produced = {grp for step in steps for grp in step.output_file_grps}
    grps: list[str] = []
    for step in steps:
        grps.extend(g for g in step.input_file_grps if g not in produced and g not in grps)
    return grps


def default_workflow(model: str) -> list[WorkflowStep]:
    """Recognise with Tesseract model `model`, then export ALTO, hOCR and plain text."""
    steps = [
        WorkflowStep("ocrd-swarm-recognize", (IMAGE_FILE_GRP,), ("OCR-D-OCR",), {"model": model})
    ]
    for export_format, grp in (
        ("alto", "OCR-D-ALTO"),
        ("hocr", "OCR-D-HOCR"),
        ("text", "OCR-D-TXT"),
    ):
        steps.append(
            WorkflowStep("ocrd-swarm-export", ("OCR-D-OCR",), (grp,), {"format": export_format})
        )
    return steps


def reads_images_from_mets(steps: Sequence[WorkflowStep]) -> bool:
    """Whether the workflow reads OCR-D's image fileGrp (OCR-D-IMG) from the METS."""
    return IMAGE_FILE_GRP in mets_input_file_grps(steps)


def with_image_file_grp(steps: Sequence[WorkflowStep], file_grp: str) -> list[WorkflowStep]:
    """The workflow reading its images from `file_grp` instead of OCR-D-IMG.

    Workflows are written for OCR-D's convention that the page images are in OCR-D-IMG;
    a METS keeps them elsewhere (OCR-D-IMG-BIN, MAX, …) as often as not. Only the steps'
    reading of OCR-D-IMG from the METS changes; a workflow that does not read it is refused,
    because then there is nothing the new name could stand for.
    """
    if not reads_images_from_mets(steps):
        read = ", ".join(mets_input_file_grps(steps)) or "nothing"
        raise WorkflowError(
            f"the image fileGrp {file_grp} replaces {IMAGE_FILE_GRP} where the workflow reads "
            f"it, but this workflow reads {read} from the METS; name {file_grp} in its -I instead"
        )
    return [
        replace(
            step,
            input_file_grps=tuple(
                file_grp if grp == IMAGE_FILE_GRP else grp for grp in step.input_file_grps
            ),
        )
        for step in steps
    ]


def format_workflow(steps: Sequence[WorkflowStep]) -> str:
    """The workflow as text that `parse_workflow` (and `ocrd process`) reads back."""
    return "".join(step.to_task() + "\n" for step in steps)


def workflow_fingerprint(steps: Sequence[WorkflowStep], page_ids: Sequence[str]) -> str:
    """A digest of what a run does (steps with parameters, pages in order), to find it again."""
    document = {
        "steps": [
            [s.executable, list(s.input_file_grps), list(s.output_file_grps), s.parameters]
            for s in steps
        ],
        "pages": list(page_ids),
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
