"""The OCR-D processor command line, one generic implementation for every built-in tool.

`ocrd-swarm-NAME -m METS -I IN -O OUT [-g PAGES] [-p JSON|FILE]... [-P KEY VALUE]...` runs
the tool over a workspace and updates its METS (processors/standalone.py); the information
options (`-J -D -L -C -R -h -V`) answer without touching any workspace. Exit codes follow
OCR-D: 0 success, 1 processing or validation failure, 2 wrong usage; no arguments at all
print the help and exit 1. Heavy modules (the processor itself, Tesseract) are imported
only when a run needs them, so `-J` and `-h` answer quickly.
"""

from __future__ import annotations

import json
import logging
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click

from ocrswarm import __version__
from ocrswarm.errors import ExitCode, FormatError, OcrswarmError, UsageError
from ocrswarm.processors import registry
from ocrswarm.processors.ocrd_tool import canonical_executable, load_ocrd_tool, tool_json

if TYPE_CHECKING:
    from ocrswarm.formats.workspace import Workspace
    from ocrswarm.processors.processor import Processor

LOG_LEVELS: dict[str, int] = {
    "OFF": logging.CRITICAL + 10,
    "ERROR": logging.ERROR,
    "WARN": logging.WARNING,
    "INFO": logging.INFO,
    "DEBUG": logging.DEBUG,
    "TRACE": logging.DEBUG - 5,
}
DEFAULT_LOG_LEVEL = "INFO"
_LOG_FORMAT = "%(asctime)s.%(msecs)03d %(levelname)s %(name)s - %(message)s"
_log_handler: logging.Handler | None = None

log = logging.getLogger(__name__)

_OPTIONS_HELP = """\
Options for processing:
  -m, --mets PATH                 METS to process [./mets.xml, or mets.xml in -w]
  -w, --working-dir PATH          Workspace directory [the METS's directory]
  -I, --input-file-grp USE        Input fileGrp(s), comma-separated
  -O, --output-file-grp USE       Output fileGrp(s), comma-separated
  -g, --page-id ID                Pages to process: ID, ID1,ID2, ID1..ID2, //regex,
                                  ~ID to exclude [all pages]
  --overwrite                     Replace existing output of the selected pages
  --debug                         Stop at the first page that fails
  -p, --parameter JSON-PATH       Parameters: a JSON object or a JSON file; repeatable,
                                  merged in order
  -P, --parameter-override KEY VAL
                                  Set one parameter (VAL read as JSON, else a string);
                                  overrides -p
  -l, --log-level [OFF|ERROR|WARN|INFO|DEBUG|TRACE]
                                  Log level on stderr [INFO]

Options for information:
  -C, --show-resource RESNAME     Print the content of resource RESNAME
  -L, --list-resources            List the names of the installed resources
  -J, --dump-json                 Print the tool's ocrd-tool.json entry
  -D, --dump-module-dir           Print the module directory (the last resource location)
  -R, --resolve-resource RESNAME  Print the path resource RESNAME resolves to
  -h, --help                      Show this message
  -V, --version                   Show the version
"""


def run_processor_cli(executable: str, args: Sequence[str] | None = None) -> int:
    """Run the processor CLI of `executable` on `args` (default: sys.argv); the exit code."""
    arguments = list(sys.argv[1:] if args is None else args)
    try:
        executable = canonical_executable(executable)
        if not arguments:
            click.echo(help_text(executable))
            return int(ExitCode.FAILURE)
        processor_command(executable).main(arguments, prog_name=executable, standalone_mode=False)
    except OcrswarmError as error:
        message = str(error)
        named = message if message.startswith(f"{executable}:") else f"{executable}: {message}"
        click.echo(f"error: {named}", err=True)
        return int(error.exit_code)
    except click.exceptions.Exit as done:
        return int(done.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as error:
        error.show()
        return int(ExitCode.USAGE) if isinstance(error, click.UsageError) else error.exit_code
    return int(ExitCode.OK)


def processor_command(executable: str) -> click.Command:
    """The click command of one tool (help is ours: it lists the tool's parameters)."""
    options = [
        click.option("-m", "--mets", default=None),
        click.option("-w", "--working-dir", default=None),
        click.option("-I", "--input-file-grp", default=None),
        click.option("-O", "--output-file-grp", default=None),
        click.option("-g", "--page-id", default=None),
        click.option("--overwrite", is_flag=True),
        click.option("--debug", is_flag=True),
        click.option("-p", "--parameter", multiple=True),
        click.option("-P", "--parameter-override", nargs=2, multiple=True),
        click.option("-l", "--log-level", type=click.Choice(list(LOG_LEVELS)), default=None),
        click.option("-C", "--show-resource", default=None),
        click.option("-L", "--list-resources", is_flag=True),
        click.option("-J", "--dump-json", is_flag=True),
        click.option("-D", "--dump-module-dir", is_flag=True),
        click.option("-R", "--resolve-resource", default=None),
        click.option("-h", "--help", "show_help", is_flag=True),
        click.option("-V", "--version", "show_version", is_flag=True),
    ]

    def callback(**given: Any) -> None:
        _run(executable, given)

    for option in reversed(options):
        callback = option(callback)
    return click.command(name=executable, add_help_option=False)(callback)


def help_text(executable: str) -> str:
    """The help of one tool: usage, description, options and its parameters."""
    tool = tool_json(executable)
    description = textwrap.fill(
        tool["description"], width=78, initial_indent="  ", subsequent_indent="  "
    )
    return (
        f"Usage: {executable} [OPTIONS]\n\n{description}\n\n{_OPTIONS_HELP}\n"
        f"Parameters:\n{_parameters_help(tool)}"
    )


def _parameters_help(tool: dict[str, Any]) -> str:
    parameters: dict[str, Any] = tool.get("parameters", {})
    if not parameters:
        return "  NONE\n"
    wrap = textwrap.TextWrapper(width=78, initial_indent="    ", subsequent_indent="    ")
    lines = []
    for name, spec in parameters.items():
        if spec.get("required"):
            default = " - REQUIRED"
        elif "default" in spec:
            default = f" - {json.dumps(spec['default'], ensure_ascii=False)}"
        else:
            default = ""
        lines.append(f'  "{name}" [{spec.get("type", "any")}{default}]')
        lines.append(wrap.fill(spec.get("description", "")))
        if "enum" in spec:
            lines.append(wrap.fill(f"Possible values: {json.dumps(spec['enum'])}"))
    return "\n".join(lines) + "\n"


def _run(executable: str, given: dict[str, Any]) -> None:
    _configure_logging(given["log_level"] or DEFAULT_LOG_LEVEL)
    if given["show_help"]:
        click.echo(help_text(executable))
    elif given["show_version"]:
        click.echo(f"Version {load_ocrd_tool()['version']}, ocrswarm {__version__}")
    elif given["dump_json"]:
        click.echo(json.dumps(tool_json(executable), indent=2, ensure_ascii=False))
    elif given["dump_module_dir"]:
        from ocrswarm.processors.resources import MODULE_DIR

        click.echo(str(MODULE_DIR))
    elif given["resolve_resource"] is not None:
        click.echo(str(_resolve_resource(executable, given["resolve_resource"])))
    elif given["show_resource"] is not None:
        from ocrswarm.processors.resources import write_resource_content

        path = _resolve_resource(executable, given["show_resource"])
        sys.stdout.flush()
        write_resource_content(path, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    elif given["list_resources"]:
        for name in _resource_names(executable):
            click.echo(name)
    else:
        _process(executable, given)


def _process(executable: str, given: dict[str, Any]) -> None:
    from ocrswarm.processors.standalone import ProcessorRun, run_standalone

    tool = tool_json(executable)
    input_file_grps = _file_grps(given["input_file_grp"], "-I/--input-file-grp")
    output_file_grps = _file_grps(given["output_file_grp"], "-O/--output-file-grp")
    _check_cardinality(tool, "input", input_file_grps)
    _check_cardinality(tool, "output", output_file_grps)
    parameters = _parameters(executable, tool, given["parameter"], given["parameter_override"])
    workspace = _open_workspace(given["mets"], given["working_dir"])
    processor_class = _processor_class(executable)
    run = ProcessorRun(
        executable=executable,
        version=str(load_ocrd_tool()["version"]),
        step=str(tool["steps"][0]),
        input_file_grps=input_file_grps,
        output_file_grps=output_file_grps,
        parameters=parameters,
        page_selection=given["page_id"],
        overwrite=given["overwrite"],
        stop_on_error=given["debug"],
    )
    report = run_standalone(workspace, run, lambda: _start(processor_class, parameters))
    log.info(
        "%s: %d page(s) processed, %d without input, %d file(s) registered in %s",
        executable,
        len(report.processed),
        len(report.skipped),
        len(report.registered),
        workspace.mets_path,
    )


def _file_grps(value: str | None, option: str) -> tuple[str, ...]:
    if value is None or not value.strip():
        raise UsageError(f"{option} is required")
    groups = tuple(part.strip() for part in value.split(","))
    if any(not group for group in groups):
        raise UsageError(f"{option} {value!r}: empty fileGrp name")
    if len(set(groups)) != len(groups):
        raise UsageError(f"{option} {value!r}: a fileGrp is named twice")
    return groups


def _check_cardinality(tool: dict[str, Any], kind: str, groups: tuple[str, ...]) -> None:
    """OCR-D's `*_file_grp_cardinality`: a number (0 = any) or [min, max] (-1 = unbounded)."""
    spec = tool.get(f"{kind}_file_grp_cardinality", 0)
    low, high = (spec, spec) if isinstance(spec, int) else (spec[0], spec[1])
    if (low > 0 and len(groups) < low) or (high > 0 and len(groups) > high):
        wanted = str(low) if low == high else f"{low} to {high if high > 0 else 'any number'}"
        raise UsageError(
            f"{tool['executable']} takes {wanted} {kind} fileGrp(s); got {len(groups)}: "
            f"{','.join(groups)}"
        )


def _parameters(
    executable: str,
    tool: dict[str, Any],
    p_values: Sequence[str],
    overrides: Sequence[tuple[str, str]],
) -> dict[str, Any]:
    from ocrswarm.processors.parameters import parse_parameter_args, validate_parameters
    from ocrswarm.processors.resources import MODULE_DIR, resolve_file_parameters

    raw = parse_parameter_args(
        p_values, overrides, resolve_preset=lambda name: _preset_file(executable, name)
    )
    parameters = validate_parameters(tool, raw)
    return resolve_file_parameters(tool, parameters, module_dir=MODULE_DIR)


def _preset_file(executable: str, name: str) -> Path | None:
    """A `-p` name found among the tool's resources (OCR-D's preset files), else None."""
    from ocrswarm.processors.resources import MODULE_DIR, ResourceError, resolve_file_parameter

    if "://" in name:
        return None  # never download a parameter file
    try:
        return resolve_file_parameter(executable, name, module_dir=MODULE_DIR)
    except ResourceError:
        return None


def _open_workspace(mets: str | None, working_dir: str | None) -> Workspace:
    """The workspace named by `-m` and `-w`, resolved as OCR-D/core resolves them."""
    from ocrswarm.formats.mets import Mets
    from ocrswarm.formats.workspace import METS_BASENAME, Workspace

    if mets is not None and mets.lower().startswith(("http://", "https://")):
        raise UsageError(f"-m {mets}: remote METS are not supported; give a local path")
    if working_dir is None:
        return Workspace.open(Path(mets or METS_BASENAME).absolute())
    directory = Path(working_dir).absolute()
    if not directory.is_dir():
        raise UsageError(f"-w {working_dir}: not a directory")
    if mets is None or Path(mets).parent == Path():
        mets_path = directory / (mets or METS_BASENAME)
    else:
        mets_path = Path(mets).absolute()
        if not mets_path.resolve().is_relative_to(directory.resolve()):
            raise UsageError(f"-m {mets} is not inside the working directory -w {working_dir}")
    if not mets_path.is_file():
        raise FormatError(f"no METS file at {mets_path}")
    return Workspace(directory, Mets.read(mets_path), mets_path=mets_path)


def _processor_class(executable: str) -> type[Processor]:
    try:
        return registry.processor_class(executable)
    except ImportError as error:
        raise OcrswarmError(
            f"{executable} is not available in this installation: {error}"
        ) from error


def _start(processor_class: type[Processor], parameters: dict[str, Any]) -> Processor:
    """Construct the processor; an unexpected failure (a library refusing to load a model)
    becomes a message instead of a traceback."""
    try:
        return processor_class(parameters)
    except OcrswarmError:
        raise
    except Exception as error:
        raise OcrswarmError(
            f"{processor_class.executable} could not start: {type(error).__name__}: {error}"
        ) from error


def _resolve_resource(executable: str, name: str) -> Path:
    """`-R`: the first place the spec's lookup order finds `name`; a Tesseract model too."""
    from ocrswarm.processors.resources import MODULE_DIR, ResourceError, resolve_file_parameter

    if "://" in name:
        raise UsageError(f"resource {name!r}: give a name or a path, not a URL")
    try:
        return resolve_file_parameter(executable, name, module_dir=MODULE_DIR)
    except ResourceError as not_found:
        try:
            return resolve_file_parameter(executable, name, module_dir=MODULE_DIR, directory=True)
        except ResourceError:
            pass
        model = _tesseract_model_file(executable, name)
        if model is None:
            raise not_found from None
        return model


def _tesseract_model_file(executable: str, name: str) -> Path | None:
    if "model" not in tool_json(executable).get("parameters", {}):
        return None
    from ocrswarm.processors.tessdata import SUFFIX, available_models

    model = name.removesuffix(SUFFIX)
    directory = available_models().get(model)
    return None if directory is None else directory / f"{model}{SUFFIX}"


def _resource_names(executable: str) -> list[str]:
    """`-L`: the names of the resources found, in lookup order, each once."""
    from ocrswarm.processors.resources import MODULE_DIR, list_resources

    tool = tool_json(executable)
    names = [
        entry.name
        for location in list_resources(executable, tool, module_dir=MODULE_DIR)
        for entry in location.entries
    ]
    if "model" in tool.get("parameters", {}):
        from ocrswarm.processors.tessdata import available_models

        names.extend(available_models())
    return list(dict.fromkeys(names))


def _configure_logging(level_name: str) -> None:
    """Log our messages to the current stderr at `level_name` (OCR-D's names)."""
    global _log_handler
    logger = logging.getLogger("ocrswarm")
    if _log_handler is not None:
        logger.removeHandler(_log_handler)
    _log_handler = logging.StreamHandler(sys.stderr)
    _log_handler.setFormatter(logging.Formatter(_LOG_FORMAT, datefmt="%H:%M:%S"))
    logger.addHandler(_log_handler)
    logger.setLevel(LOG_LEVELS[level_name])


def _exit_with(executable: str) -> NoReturn:
    sys.exit(run_processor_cli(executable))


# Console-script entry points, one per built-in tool (see [project.scripts] in pyproject.toml).


def dummy() -> NoReturn:
    _exit_with("ocrd-swarm-dummy")


def binarize() -> NoReturn:
    _exit_with("ocrd-swarm-binarize")


def deskew() -> NoReturn:
    _exit_with("ocrd-swarm-deskew")


def segment() -> NoReturn:
    _exit_with("ocrd-swarm-segment")


def recognize() -> NoReturn:
    _exit_with("ocrd-swarm-recognize")


def export() -> NoReturn:
    _exit_with("ocrd-swarm-export")
