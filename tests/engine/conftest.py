"""Stores for the engine's tests: every store test runs on SQLite and on PostgreSQL.

SQLite: the schema is migrated once per session into a template file that each test
copies. PostgreSQL: one database with a random name per session (so parallel runs never
collide) on the server named by $OCRSWARM_TEST_POSTGRES_URL, emptied before each test and
dropped at the end. Without that server the PostgreSQL cases skip visibly, or fail under
OCRSWARM_REQUIRE_ALL=1 (CI).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from ocrswarm.engine.database import connect, database_url, migrate
from ocrswarm.engine.schema import metadata
from ocrswarm.engine.store import Store, sqlite_url
from tests.conftest import require_or_skip

POSTGRES_ENV = "OCRSWARM_TEST_POSTGRES_URL"


class FakeClock:
    """The store's clock in tests: time moves only when a test says so."""

    def __init__(self, start: float = 1_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite file with the migrated schema, to copy for each test."""
    path = tmp_path_factory.mktemp("store-template") / "state.sqlite"
    engine = connect(sqlite_url(path))
    migrate(engine)
    engine.dispose()
    return path


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh, migrated PostgreSQL database for this session; dropped afterwards."""
    server = os.environ.get(POSTGRES_ENV)
    if not server:
        require_or_skip(f"${POSTGRES_ENV} is not set: no PostgreSQL to test the store on")
        raise AssertionError("unreachable")
    admin_url = database_url(server).set(database="postgres")
    admin = create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"ocrswarm_test_{secrets.token_hex(6)}"
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except OperationalError as error:
        admin.dispose()
        require_or_skip(f"PostgreSQL at {make_url(server)!r} is unreachable: {error.orig}")
    url = admin_url.set(database=name).render_as_string(hide_password=False)
    engine = connect(url)
    migrate(engine)
    engine.dispose()
    yield url
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty, migrated store database of each kind."""
    if request.param == "sqlite":
        path = tmp_path / "state.sqlite"
        shutil.copyfile(request.getfixturevalue("sqlite_template"), path)
        return sqlite_url(path)
    url: str = request.getfixturevalue("postgres_url")
    engine = create_engine(database_url(url))
    tables = ", ".join(table.name for table in metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(store_url: str, clock: FakeClock) -> Iterator[Store]:
    """An empty store on each database, on a clock the test moves."""
    with Store(store_url, clock=clock) as opened:
        yield opened
