"""`ocrswarm worker`: this machine's cores for a distributed `ocrswarm serve`.

Consumes the processors' RabbitMQ queues, claims each message's page task in the shared
PostgreSQL store, runs it in local worker processes and records the outcome. The files are
reached through a shared directory (the task names absolute paths on the server;
`--path-map` translates them) or, on a machine without one, over HTTP from the server
(`--server URL --token T`): each worker process downloads a page's inputs into a local
mirror and uploads its outputs before the page is recorded as done. SIGTERM or Ctrl-C
stops it cleanly: the pages under way are finished (or given back after a grace period),
unstarted messages go back to their queues, and the worker is marked stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import secrets
import socket
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ocrswarm.config import PathMap, WorkerSettings, load_configuration
from ocrswarm.errors import UsageError

if TYPE_CHECKING:
    from ocrswarm.engine.transfer import RemoteFiles


@click.command()
@click.option("--queue", "queue_url", metavar="URL", help="RabbitMQ: amqp://USER:PASS@HOST/VHOST")
@click.option("--db", "db_url", metavar="URL", help="The shared store: postgresql://…")
@click.option(
    "--processors",
    metavar="A,B",
    help="The processors (queues) to take pages of (default: every one this machine runs).",
)
@click.option(
    "-j", "--jobs", type=click.IntRange(min=1), help="Worker processes (default: one per core)."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The deployment's TOML file: [queue], [database] and [worker] tables.",
)
@click.option("--id", "worker_id", help="This worker's name (default: host:pid:random).")
@click.option(
    "--path-map",
    "path_maps",
    multiple=True,
    metavar="SERVER_PREFIX=LOCAL_PREFIX",
    help="Where the server's files are mounted here (repeatable).",
)
@click.option("--server", "server_url", metavar="URL", help="HTTP file transfer from this server.")
@click.option("--token", help="The API token for --server (role worker).")
@click.option(
    "--mirror-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where --server's files are copied to (default: ~/.cache/ocrswarm/mirror).",
)
def worker(
    queue_url: str | None,
    db_url: str | None,
    processors: str | None,
    jobs: int | None,
    config_file: Path | None,
    worker_id: str | None,
    path_maps: tuple[str, ...],
    server_url: str | None,
    token: str | None,
    mirror_dir: Path | None,
) -> None:
    """Process pages of a distributed ocrswarm server: take them from RabbitMQ, record them
    in the shared PostgreSQL store. Options given here override the configuration file."""
    configuration = load_configuration(config_file)
    settings = configuration.worker.with_overrides(
        processors=tuple(p.strip() for p in processors.split(",") if p.strip())
        if processors
        else None,
        jobs=jobs,
        id=worker_id,
        path_map=tuple(PathMap.parse(text) for text in path_maps),
        server_url=server_url,
        token=token,
        mirror_dir=mirror_dir.absolute() if mirror_dir is not None else None,
    )
    queue = queue_url or configuration.queue_url
    database = db_url or configuration.database_url
    if queue is None:
        raise UsageError("no RabbitMQ: give --queue amqp://… (or [queue] url in --config)")
    if database is None or not database.startswith("postgresql"):
        raise UsageError("no shared store: give --db postgresql://… (or [database] url)")
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_worker(queue, database, settings)


def run_worker(queue_url: str, database_url: str, settings: WorkerSettings) -> None:
    """Register, consume until SIGINT/SIGTERM, deregister (see the module docstring)."""
    from ocrswarm.engine import amqp
    from ocrswarm.engine.brokertasks import BrokerTasks
    from ocrswarm.engine.coordinator import Coordinator, CoordinatorOptions, Interrupted
    from ocrswarm.engine.records import TaskLease
    from ocrswarm.engine.service import DATABASE_PATIENCE_SECONDS, NoMetsWriting
    from ocrswarm.engine.store import Store
    from ocrswarm.engine.tools import available_executables
    from ocrswarm.engine.workerregistry import HEARTBEAT_SECONDS
    from ocrswarm.engine.workers import WorkerPool

    remote_files = checked_remote_files(settings)
    amqp.connect(queue_url).close()  # unreachable: a clear error now, not retries forever
    log = logging.getLogger("ocrswarm.worker")
    processors = list(settings.processors or available_executables())
    host = socket.gethostname()
    name = settings.id or f"{host}:{os.getpid()}:{secrets.token_hex(3)}"
    with Store(database_url) as base:
        base.migrate()
        store = base.patient(DATABASE_PATIENCE_SECONDS)
        store.register_worker(
            name, host=host, pid=os.getpid(), processors=processors, capacity=settings.jobs
        )

        def local(lease: TaskLease) -> TaskLease:
            mapped = settings.local_path(lease.workspace_dir)
            return dataclasses.replace(lease, workspace_dir=mapped)

        source = BrokerTasks(
            store,
            queue_url,
            processors,
            prefetch=settings.jobs,
            prepare=local if settings.path_map else None,
        )
        coordinator = Coordinator(
            store,
            None,
            NoMetsWriting(),
            CoordinatorOptions(workers=settings.jobs, lease_seconds=settings.lease_seconds),
            source=source,
            name=name,
            pool=None
            if remote_files is None
            else WorkerPool(settings.jobs, remote_files=remote_files),
        )
        stopped = threading.Event()

        def beat() -> None:
            while not stopped.wait(HEARTBEAT_SECONDS):
                try:
                    store.worker_heartbeat(name, coordinator.in_flight())
                except Exception as error:  # the database is away: the next beat will do
                    log.warning("heartbeat failed: %s", error)

        heart = threading.Thread(target=beat, name="ocrswarm-heartbeat", daemon=True)
        heart.start()
        log.info(
            "worker %s: %d processes on %s (%s)",
            name,
            settings.jobs,
            ", ".join(processors),
            amqp.redact(queue_url),
        )
        try:
            coordinator.run()
        except Interrupted as interrupted:
            log.info("worker %s stopped (%s)", name, interrupted)
        finally:
            stopped.set()
            heart.join()
            store.stop_worker(name)


def checked_remote_files(settings: WorkerSettings) -> RemoteFiles | None:
    """The HTTP file transfer of `--server`, or None without one. The URL and the token are
    tried now: a wrong one stops the worker before it takes a page."""
    if settings.server_url is None:
        return None
    from ocrswarm.engine.transfer import RemoteFiles

    if not settings.server_url.startswith(("http://", "https://")):
        raise UsageError(f"--server {settings.server_url!r}: expected an http:// or https:// URL")
    if settings.token is None:
        raise UsageError("--server needs --token (a token of the role worker)")
    if settings.path_map:
        raise UsageError(
            "give --path-map (a shared directory) or --server (HTTP file transfer), not both"
        )
    remote = RemoteFiles(settings.server_url, settings.token, mirror_dir(settings))
    with remote.open() as transfer:
        transfer.check_token()
    return remote


def mirror_dir(settings: WorkerSettings) -> Path:
    """Where an HTTP-transferring worker keeps its copies: `mirror_dir`, else the user's
    cache directory."""
    if settings.mirror_dir is not None:
        return settings.mirror_dir
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "ocrswarm" / "mirror"
