"""The `ocrswarm` command line: a click group whose subcommands live in sibling modules."""

import sys

import click
from rich.console import Console
from rich.text import Text

from ocrswarm import __version__
from ocrswarm.cli.export import export
from ocrswarm.cli.run import run
from ocrswarm.cli.serve import serve
from ocrswarm.cli.token import token
from ocrswarm.cli.worker import worker
from ocrswarm.cli.workspace import workspace
from ocrswarm.errors import ExitCode, OcrswarmError

stderr = Console(stderr=True, highlight=False, markup=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="ocrswarm")
def cli() -> None:
    """Distributed OCR on OCR-D workspaces: METS, PAGE-XML, ALTO, hOCR and text."""


cli.add_command(workspace)
cli.add_command(export)
cli.add_command(run)
cli.add_command(serve)
cli.add_command(token)
cli.add_command(worker)


def main() -> None:
    """Entry point: run the CLI and turn deliberate errors into a message and an exit code."""
    try:
        cli.main(standalone_mode=False)
    except OcrswarmError as error:
        stderr.print(Text.assemble(("error: ", "bold red"), str(error)), soft_wrap=True)
        sys.exit(int(error.exit_code))
    except click.exceptions.Abort:
        stderr.print("aborted")
        sys.exit(130)
    except click.exceptions.Exit as done:
        sys.exit(done.exit_code)
    except click.ClickException as error:
        error.show()
        sys.exit(int(ExitCode.USAGE) if isinstance(error, click.UsageError) else error.exit_code)
    sys.exit(0)
