"""`ocrswarm serve`: the OCR-D Web API on this machine's cores (FastAPI on uvicorn)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import click

from ocrswarm.errors import UsageError
from ocrswarm.server.settings import ServerSettings, load_settings


def check_distributed(settings: ServerSettings) -> None:
    """Refuse what cannot work before anything starts: workers elsewhere need a database
    they can reach, and a server without local workers needs remote ones."""
    if settings.queue_url is None:
        if settings.workers < 1:
            raise UsageError("--workers 0 needs --queue: without RabbitMQ nobody would work")
        return
    from ocrswarm.engine.amqp import connection_parameters

    connection_parameters(settings.queue_url)  # a malformed URL fails here
    if not settings.database_url.startswith("postgresql"):
        raise UsageError(
            "--queue needs a database the workers share: --db postgresql://… (or [database] url)"
        )


@click.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where the server keeps its state and workspaces (default ./ocrswarm-data).",
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A TOML file with a [server] table (tokens, allowlist, data roots, limits, …) and "
    "[queue], [database] tables for a distributed deployment.",
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(min=0),
    help="Local worker processes (default: one per core; 0 with --queue: none, remote workers "
    "do the work).",
)
@click.option(
    "--queue",
    "queue_url",
    metavar="URL",
    help="RabbitMQ (amqp://USER:PASS@HOST/VHOST): dispatch page tasks to `ocrswarm worker`s.",
)
@click.option(
    "--db",
    "db_url",
    metavar="URL",
    help="The store's database (postgresql://… to share it with workers; default SQLite in "
    "the data directory).",
)
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    config_file: Path | None,
    workers: int | None,
    queue_url: str | None,
    db_url: str | None,
) -> None:
    """Serve the OCR-D Web API: processors, workflows and workspaces, with jobs that
    survive a restart. Options given here override the configuration file."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from ocrswarm.server.app import create_app
    from ocrswarm.server.auth import open_api_warning
    from ocrswarm.server.graceful import GracefulServer, stopping_event

    settings = load_settings(config_file).with_overrides(
        host=host, port=port, data_dir=data_dir, workers=workers, queue_url=queue_url, db_url=db_url
    )
    check_distributed(settings)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    warning = open_api_warning(settings)
    if warning:
        click.secho(f"warning: {warning}", err=True, fg="yellow")
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        proxy_headers=False,  # X-Forwarded-For is judged by the IP allowlist, not uvicorn
        timeout_graceful_shutdown=30,
    )
    server = GracefulServer(config, stopping_event(app))
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C after a clean stop, as uvicorn.run
        server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
