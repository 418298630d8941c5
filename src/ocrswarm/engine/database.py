"""Connecting to the store's database: SQLite (embedded) or PostgreSQL, one code path.

SQLite runs in WAL mode with synchronous=NORMAL: a commit costs no fsync, a crashed process
loses nothing committed, and a power loss can lose at most the last commits (pages whose
completion then is simply redone), never consistency. Write transactions start with
BEGIN IMMEDIATE so that concurrent writers queue on the lock (busy_timeout) instead of
failing when a read turns into a write. PostgreSQL sessions use synchronous_commit=off for
the same trade; transactions that hit a deadlock or serialization failure are retried.

An engine made `patient` (the execution option PATIENCE_OPTION, in seconds) also waits for
a PostgreSQL server that went away (a restart, a network cut): its transactions are tried
again with backoff until the server answers or the patience runs out. Every store
operation tolerates running twice when a lost connection leaves a commit's fate unknown
(completion is idempotent by token, a stale token changes nothing, a lost claim expires).
"""

from __future__ import annotations

import logging
import os
import random
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from ocrswarm.errors import OcrswarmError, UsageError

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT_MS = 60_000
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_WRITE = "ocrswarm_write"
_RETRIED_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock detected, serialization failure
_MAX_TRIES = 8
_MIGRATION_LOCK_KEY = 0x6F63_7273_7761_726D  # "ocrswarm"; PostgreSQL advisory lock
PATIENCE_OPTION = "ocrswarm_patience"
_LOST_SQLSTATE_PREFIXES = ("08", "57P")  # connection exceptions; admin or crash shutdown
_MAX_PAUSE = 2.0

log = logging.getLogger(__name__)


class StoreError(OcrswarmError):
    """The store's database cannot be reached or used."""


def database_url(url: str) -> URL:
    """The SQLAlchemy URL for `url`; plain `postgresql://` means the psycopg 3 driver."""
    try:
        parsed = make_url(url)
    except ArgumentError as error:
        raise UsageError(f"not a database URL: {url!r} ({error})") from error
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise UsageError(f"unsupported database {url!r}: use sqlite:///PATH or postgresql://…")
    return parsed


def connect(url: str) -> Engine:
    """An engine for `url`, configured as the module docstring says."""
    parsed = database_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(parsed)
        event.listen(engine, "connect", _sqlite_on_connect)
        event.listen(engine, "begin", _sqlite_on_begin)
    else:
        engine = create_engine(parsed, pool_pre_ping=True)
        event.listen(engine, "connect", _postgresql_on_connect)
    _dispose_in_forked_children(engine)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None  # we say BEGIN ourselves (see _sqlite_on_begin)
    cursor = dbapi_connection.cursor()
    for pragma in (
        "PRAGMA journal_mode=WAL",
        "PRAGMA synchronous=NORMAL",
        f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}",
        "PRAGMA foreign_keys=ON",
    ):
        cursor.execute(pragma)
    cursor.close()


def _sqlite_on_begin(connection: Connection) -> None:
    immediate = connection.get_execution_options().get(_WRITE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _postgresql_on_connect(dbapi_connection: Any, _record: Any) -> None:
    with dbapi_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO OFF")
    dbapi_connection.commit()


def _dispose_in_forked_children(engine: Engine) -> None:
    """A forked worker must not reuse its parent's connections: drop them (without closing)."""
    reference = weakref.ref(engine)

    def after_fork() -> None:
        alive = reference()
        if alive is not None:
            alive.dispose(close=False)

    os.register_at_fork(after_in_child=after_fork)


def run_write(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in one write transaction, retried on deadlocks and serialization failures
    (and, on a patient engine, while the database is away)."""
    attempt = 0
    waited = _Patience(engine)
    while True:
        attempt += 1
        try:
            with engine.connect() as connection:
                connection.execution_options(**{_WRITE: True})
                with connection.begin():
                    return work(connection)
        except DBAPIError as error:
            if waited.another_try(error):
                continue
            if attempt >= _MAX_TRIES or _sqlstate(error) not in _RETRIED_SQLSTATES:
                _raise_store_error(error)
                raise
            time.sleep(random.uniform(0, 0.005 * 2**attempt))


def run_read(engine: Engine, work: Callable[[Connection], T]) -> T:
    """Run `work` in one read-only transaction (a consistent snapshot on both databases)."""
    waited = _Patience(engine)
    while True:
        try:
            with engine.connect() as connection, connection.begin():
                return work(connection)
        except DBAPIError as error:
            if waited.another_try(error):
                continue
            _raise_store_error(error)
            raise


class _Patience:
    """How long one operation still waits for a database that went away."""

    def __init__(self, engine: Engine) -> None:
        self._seconds = float(engine.get_execution_options().get(PATIENCE_OPTION, 0.0))
        self._postgresql = engine.dialect.name == "postgresql"
        self._started = 0.0
        self._pause = 0.1

    def another_try(self, error: DBAPIError) -> bool:
        """Whether to try again after `error` (having slept a while), or give up."""
        if self._seconds <= 0 or not self._postgresql or not _connection_lost(error):
            return False
        now = time.monotonic()
        if not self._started:
            self._started = now
            log.warning("database connection lost (%s); waiting for it", error.orig)
        if now - self._started + self._pause > self._seconds:
            return False
        time.sleep(self._pause)
        self._pause = min(_MAX_PAUSE, self._pause * 2)
        return True


def _connection_lost(error: DBAPIError) -> bool:
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    state = _sqlstate(error)
    return state is None or state.startswith(_LOST_SQLSTATE_PREFIXES)


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None)


def _raise_store_error(error: DBAPIError) -> None:
    """Operational trouble (unreachable server, lock timeout) is the user's to see."""
    if isinstance(error, OperationalError):
        raise StoreError(f"database error: {error.orig}") from error


def refresh_statistics(engine: Engine, tables: Sequence[str]) -> None:
    """PostgreSQL: ANALYZE `tables` now (SQLite: nothing), after a change that makes their
    statistics wrong, such as a submission of thousands of page tasks.

    The planner's estimates come from the last ANALYZE, and plans that connections cached
    (psycopg prepares a statement it runs often) keep them until the next one: with the
    `tasks` table last analysed before a big submission, it believes no task is QUEUED and
    the dispatcher's take_ready ran as a nested loop over the whole table, O(n) per call.
    Autovacuum analyses only about once a minute. A failure is logged and ignored: the
    submission is committed already, and only speed is at stake.
    """
    if engine.dialect.name != "postgresql":
        return
    try:
        with engine.connect() as connection:
            connection.exec_driver_sql(f"ANALYZE {', '.join(tables)}")
            connection.commit()
    except DBAPIError as error:
        log.warning("cannot refresh the planner's statistics of %s: %s", tables, error.orig)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (alembic upgrade head), safe to run twice.

    Concurrent callers are serialised: SQLite by the write lock, PostgreSQL by an advisory
    lock held for the transaction.
    """
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))

    def upgrade(connection: Connection) -> None:
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK_KEY)))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")

    run_write(engine, upgrade)
