"""Database URLs, the SQLite settings, and migrations that build exactly the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, inspect, text
from sqlalchemy.exc import OperationalError

from ocrswarm.engine.database import StoreError, connect, database_url, migrate, run_write
from ocrswarm.engine.schema import metadata
from ocrswarm.engine.store import Store, sqlite_url
from ocrswarm.errors import UsageError


def test_plain_postgresql_urls_use_psycopg_3() -> None:
    assert database_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert database_url("sqlite:///x.sqlite").drivername == "sqlite"


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url"])
def test_other_databases_are_refused(url: str) -> None:
    with pytest.raises(UsageError, match="database"):
        database_url(url)


def test_sqlite_runs_in_wal_mode_without_fsync_per_commit(tmp_path: Path) -> None:
    engine = connect(sqlite_url(tmp_path / "deep" / "state.sqlite"))
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 1  # NORMAL
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1
    engine.dispose()


def test_the_migrated_schema_is_the_declared_one(store_url: str) -> None:
    engine = connect(store_url)
    with engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), metadata) == []
        assert set(inspect(connection).get_table_names()) >= {
            t.name for t in metadata.sorted_tables
        }
    engine.dispose()


def test_migrating_again_changes_nothing(store_url: str) -> None:
    with Store(store_url) as store:
        store.migrate()
        store.migrate()
        engine = connect(store_url)
        with engine.connect() as connection:
            version = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        engine.dispose()
    assert version == [("0002",)]


def test_a_new_sqlite_file_is_migrated_from_nothing(tmp_path: Path) -> None:
    with Store(sqlite_url(tmp_path / "new.sqlite")) as store:
        store.migrate()
        assert store.add_workspace(tmp_path / "mets.xml")
    engine = connect(sqlite_url(tmp_path / "new.sqlite"))
    migrate(engine)
    engine.dispose()


class Deadlock(Exception):
    sqlstate = "40P01"


def test_deadlocked_transactions_are_retried_and_other_errors_reported(tmp_path: Path) -> None:
    engine = connect(sqlite_url(tmp_path / "state.sqlite"))
    calls: list[int] = []

    def deadlocks_once(connection: Connection) -> int:
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("UPDATE tasks", {}, Deadlock())
        return len(calls)

    assert run_write(engine, deadlocks_once) == 2

    def unreachable(connection: Connection) -> int:
        raise OperationalError("SELECT 1", {}, Exception("connection refused"))

    with pytest.raises(StoreError, match="database error: connection refused"):
        run_write(engine, unreachable)
    engine.dispose()
