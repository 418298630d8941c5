"""The deployment's one TOML file: [queue], [database], [worker] beside [server]."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocrswarm.cli.serve import check_distributed
from ocrswarm.config import PathMap, load_configuration
from ocrswarm.errors import UsageError
from ocrswarm.server.settings import load_settings

EXAMPLE = """
[queue]
url = "amqp://ocrswarm:secret@mq/"

[database]
url = "postgresql://ocrswarm@db/ocrswarm"

[server]
workers = 0

[worker]
processors = ["ocrd-swarm-recognize"]
jobs = 4
id = "ocr-7"
path_map = ["/srv/ocrswarm=/mnt/ocrswarm"]
server = "https://ocr.example.org"
token = "t0k3n"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "ocrswarm.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_server_and_worker_read_the_same_file(tmp_path: Path) -> None:
    path = write(tmp_path, EXAMPLE)
    configuration = load_configuration(path)
    worker = configuration.worker
    assert configuration.queue_url == "amqp://ocrswarm:secret@mq/"
    assert (worker.processors, worker.jobs, worker.id) == (("ocrd-swarm-recognize",), 4, "ocr-7")
    assert (worker.server_url, worker.token) == ("https://ocr.example.org", "t0k3n")
    assert worker.local_path(Path("/srv/ocrswarm/book")) == Path("/mnt/ocrswarm/book")
    assert worker.local_path(Path("/elsewhere/book")) == Path("/elsewhere/book")
    assert worker.with_overrides(jobs=2, processors=()).jobs == 2
    settings = load_settings(path)
    assert settings.queue_url == configuration.queue_url
    assert settings.database_url == "postgresql://ocrswarm@db/ocrswarm"
    assert settings.workers == 0
    check_distributed(settings)


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[queue]\nurl = 'http://mq/'\n", "queue.url"),
        ("[queue]\nhost = 'mq'\n", "queue.host"),
        ("[database]\nurl = 'mysql://db/x'\n", "database.url"),
        ("[worker]\njobs = 0\n", "worker.jobs"),
        ("[worker]\nprocessors = ['tesseract']\n", "worker.processors"),
        ("[worker]\npath_map = ['relative=/mnt']\n", "worker.path_map"),
        ("[worker]\nserver = 'ftp://x'\n", "worker.server"),
        ("[worker]\nthreads = 2\n", "worker.threads"),
        ("[wrker]\njobs = 2\n", "wrker: unknown table"),
        ("queue = 'amqp://mq/'\n", "[queue] must be a table"),
    ],
)
def test_a_wrong_setting_is_named(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(UsageError, match=named.replace("[", r"\[").replace("]", r"\]")):
        load_configuration(write(tmp_path, text))


def test_two_different_database_urls_are_refused(tmp_path: Path) -> None:
    path = write(
        tmp_path, "[database]\nurl = 'postgresql://a/x'\n[server]\ndb_url = 'sqlite:///b'\n"
    )
    with pytest.raises(UsageError, match="differ"):
        load_settings(path)


def test_distributed_mode_needs_a_shared_database_and_some_worker(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[queue]\nurl = 'amqp://mq/'\n"))
    with pytest.raises(UsageError, match="postgresql"):
        check_distributed(settings)  # SQLite in the data directory: no worker could share it
    with pytest.raises(UsageError, match="--workers 0 needs --queue"):
        check_distributed(load_settings(write(tmp_path, "[server]\nworkers = 0\n")))


def test_a_path_map_needs_an_absolute_server_prefix() -> None:
    assert PathMap.parse("/srv=/mnt").apply(Path("/srv/a/mets.xml")) == Path("/mnt/a/mets.xml")
    with pytest.raises(UsageError, match="SERVER_PREFIX=LOCAL_PREFIX"):
        PathMap.parse("/srv")
