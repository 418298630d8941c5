"""`ocrswarm token new`: make an API token and the configuration lines that admit it."""

from __future__ import annotations

import click

from ocrswarm.server.auth import Role, new_token, token_digest


@click.group()
def token() -> None:
    """API tokens for `ocrswarm serve` (only their SHA-256 digests go into the configuration)."""


@token.command("new")
@click.option("--name", required=True, help="Who or what uses the token (shown in 403 answers).")
@click.option(
    "--role",
    type=click.Choice([role.value for role in Role]),
    default=Role.SUBMITTER.value,
    show_default=True,
    help="reader: read only; worker: also upload the outputs of the pages it leases "
    "(ocrswarm worker --server); submitter: also run jobs and upload; admin: also delete.",
)
def new(name: str, role: str) -> None:
    """Print a fresh random token once, and the [[server.tokens]] entry to configure.

    The token itself is not stored anywhere: keep it now, or make a new one.
    """
    if not name.strip() or any(char in name for char in '"\\\n\r'):
        raise click.BadParameter("must be non-empty, without quotes, backslashes or newlines")
    secret = new_token()
    click.echo(f"token: {secret}")
    click.echo("")
    click.echo("# add to the configuration file (--config) of `ocrswarm serve`:")
    click.echo("[[server.tokens]]")
    click.echo(f'name = "{name.strip()}"')
    click.echo(f'sha256 = "{token_digest(secret)}"')
    click.echo(f'role = "{role}"')
