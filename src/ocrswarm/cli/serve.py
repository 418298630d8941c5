"""`ocrswarm serve`: the OCR-D Web API on this machine's cores (FastAPI on uvicorn)."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

import click

from ocrswarm.server.settings import load_settings


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
    help="A TOML file with a [server] table (tokens, allowlist, data roots, limits, …).",
)
@click.option("-j", "--workers", type=int, help="Local worker processes (default: one per core).")
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    config_file: Path | None,
    workers: int | None,
) -> None:
    """Serve the OCR-D Web API: processors, workflows and workspaces, with jobs that
    survive a restart. Options given here override the configuration file."""
    import uvicorn
    from uvicorn.config import STARTUP_FAILURE

    from ocrswarm.server.app import create_app
    from ocrswarm.server.auth import open_api_warning
    from ocrswarm.server.graceful import GracefulServer, stopping_event

    settings = load_settings(config_file).with_overrides(
        host=host, port=port, data_dir=data_dir, workers=workers
    )
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
