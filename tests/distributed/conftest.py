"""Fixtures of the fault tests: this session's own services, hosts and a cluster per test.

Session: network namespaces behind a bridge (when the sandbox allows them), a private
PostgreSQL and a private RabbitMQ node listening on loopback and the bridge (see
services.py: the machine's shared services are never stopped). Per test: a new database, a
new RabbitMQ vhost, and a `Cluster` whose processes are killed at the end; a failing test's
report carries every process's log.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ocrswarm.formats.workspace import Workspace
from tests.conftest import require_or_skip
from tests.distributed.cluster import HEARTBEAT_SECONDS, Cluster
from tests.distributed.hosts import Hosts, NamespacesUnavailable
from tests.distributed.services import PrivatePostgres, PrivateRabbitMQ, ServiceUnavailable
from tests.render import render_page

_CLUSTER = pytest.StashKey["Cluster"]()


@dataclass
class Services:
    postgres: PrivatePostgres
    rabbitmq: PrivateRabbitMQ


@pytest.fixture(scope="session")
def hosts() -> Iterator[Hosts | None]:
    """A bridge for network namespaces, or None where the sandbox forbids them (the test
    of a cut-off host then freezes a plain process instead, and says so)."""
    try:
        made = Hosts()
    except NamespacesUnavailable as error:
        if os.environ.get("OCRSWARM_REQUIRE_ALL") == "1":  # CI must test separate hosts
            pytest.fail(f"required component missing (OCRSWARM_REQUIRE_ALL=1): {error}")
        warnings.warn(
            f"no network namespaces here ({error}): hosts are plain processes", stacklevel=1
        )
        yield None
        return
    yield made
    made.close()


@pytest.fixture(scope="session")
def services(hosts: Hosts | None) -> Iterator[Services]:
    addresses = ["127.0.0.1"] + ([hosts.address] if hosts else [])
    try:
        postgres = PrivatePostgres(addresses, network=str(hosts.network) if hosts else None)
        rabbitmq = PrivateRabbitMQ(addresses)
    except ServiceUnavailable as error:
        require_or_skip(f"cannot run private services for the fault tests: {error}")
        raise AssertionError("unreachable") from error
    try:
        postgres.start()
        rabbitmq.start()
        yield Services(postgres, rabbitmq)
    finally:
        rabbitmq.close()
        postgres.close()


@pytest.fixture
def cluster(
    request: pytest.FixtureRequest, tmp_path: Path, services: Services, hosts: Hosts | None
) -> Iterator[Cluster]:
    """A server and workers to start, on a database and a vhost of this test alone."""
    database = services.postgres.create_database().rsplit("/", 1)[1]
    vhost = services.rabbitmq.add_vhost()
    made = Cluster(
        tmp_path,
        queue_url=lambda host: services.rabbitmq.url(
            vhost, host, query=f"heartbeat={HEARTBEAT_SECONDS}"
        ),
        database_url=lambda host: services.postgres.url(database, host),
        server_host=hosts.address if hosts else "127.0.0.1",
    )
    request.node.stash[_CLUSTER] = made
    try:
        yield made
    finally:
        made.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failing test's report shows the log of every process of its cluster."""
    report = yield
    made = item.stash.get(_CLUSTER, None)
    if made is not None and report.failed:
        for name, log in made.logs():
            report.sections.append((f"log of {name}", log))
    return report


@pytest.fixture
def make_workspace(tmp_path: Path) -> Callable[[int], Path]:
    """Factory: a workspace of `pages` small rendered pages in OCR-D-IMG; its METS path."""

    def make(pages: int) -> Path:
        scans = tmp_path / "scans"
        scans.mkdir()
        for n in range(1, pages + 1):
            render_page(scans / f"page_{n:04d}.png", [f"Page {n}"], size=(120, 160))
        return Workspace.from_images(scans, tmp_path / "ws").mets_path

    return make
