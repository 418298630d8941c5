"""docs/deploy.md stays true: its example configuration is read by the server and the
worker as the guide says, and its systemd units have what the guide promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ocrswarm.cli.serve import check_distributed
from ocrswarm.cli.worker import checked_remote_files
from ocrswarm.config import load_configuration
from ocrswarm.server.auth import Role
from ocrswarm.server.settings import load_settings
from tests.conftest import REPO

GUIDE = REPO / "docs" / "deploy.md"


def blocks(language: str) -> list[str]:
    text = GUIDE.read_text(encoding="utf-8")
    found: list[str] = re.findall(rf"```{language}\n(.*?)```", text, re.DOTALL)
    return found


@pytest.fixture
def example(tmp_path: Path) -> Path:
    (toml,) = blocks("toml")
    path = tmp_path / "ocrswarm.toml"
    path.write_text(toml, encoding="utf-8")
    return path


def test_the_server_reads_the_example_configuration(example: Path) -> None:
    settings = load_settings(example)

    check_distributed(settings)  # a queue and a shared PostgreSQL store
    assert settings.queue_url is not None and settings.queue_url.startswith("amqp://")
    assert settings.database_url.startswith("postgresql://")
    assert settings.workers == 0
    assert {token.role for token in settings.tokens} == {Role.SUBMITTER, Role.WORKER, Role.READER}
    assert settings.trusted_proxies and settings.allow


def test_the_worker_reads_the_example_configuration(example: Path) -> None:
    configuration = load_configuration(example)

    worker = configuration.worker
    assert worker.jobs == 8 and worker.processors and worker.path_map
    assert configuration.queue_url == load_settings(example).queue_url
    assert checked_remote_files(worker) is None  # path maps: the shared directory


def test_the_commented_http_transfer_lines_are_valid_too(example: Path, tmp_path: Path) -> None:
    text = example.read_text(encoding="utf-8")
    text = re.sub(r"^path_map = .*$", "", text, flags=re.MULTILINE)
    text = re.sub(r"^# (server|token|mirror_dir) = ", r"\1 = ", text, flags=re.MULTILINE)
    uncommented = tmp_path / "http.toml"
    uncommented.write_text(text, encoding="utf-8")

    worker = load_configuration(uncommented).worker

    assert worker.server_url == "https://ocr.example.org"
    assert worker.token and worker.mirror_dir == Path("/var/cache/ocrswarm/mirror")


@pytest.mark.parametrize("unit", blocks("ini"), ids=["server", "worker"])
def test_the_systemd_units_stop_gracefully_and_restart(unit: str) -> None:
    lines = set(unit.splitlines())

    assert "Environment=OMP_THREAD_LIMIT=1" in lines
    assert "Restart=on-failure" in lines
    assert "KillSignal=SIGTERM" in lines
    (timeout,) = (line for line in lines if line.startswith("TimeoutStopSec="))
    assert int(timeout.partition("=")[2]) >= 60  # longer than the worker's 10 s grace and more
