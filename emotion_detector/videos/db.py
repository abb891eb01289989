"""Engine and sessions for the configured database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import functools
import logging
import threading
import time
from pathlib import Path
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, Result, create_engine, event, exc
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"  # package data: an installed package migrates too
RETRY_S = (0.5, 30.0)  # backoff from the first to the second while the database is unreachable


@functools.cache
def engine_for(url: str) -> Engine:
    if url.startswith("sqlite"):
        Path(url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
            cursor = connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")  # web and workers read and write at once
            # In WAL mode NORMAL cannot corrupt the database; a commit skips its fsync (a power cut may lose the
            # last commits, a crashed process loses nothing), and workers commit progress several times a second.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    return create_engine(url, pool_pre_ping=True)


def rowcount(result: Result[*tuple[Any, ...]]) -> int:
    """The rows an UPDATE or DELETE matched. Session.execute is typed to return a Result; for those statements
    it is a CursorResult, which has the count."""
    return cast(CursorResult[*tuple[Any, ...]], result).rowcount


def sessions(url: str) -> sessionmaker[Session]:
    return sessionmaker(engine_for(url), expire_on_commit=False)


def migrate(url: str) -> None:
    """Bring the schema up to date (alembic upgrade head). Every process does this on start: one log line when
    the schema changed, none when it was up to date (alembic's own, a dozen per start, are silenced)."""
    logging.getLogger("alembic").setLevel(logging.WARNING)  # before the import, which logs its plugins
    from alembic import command
    from alembic.config import Config

    config = Config()  # alembic.ini (the checkout's, for the alembic command) is not needed to upgrade
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    before = _schema_revision(url)
    command.upgrade(config, "head")
    after = _schema_revision(url)
    if after != before:
        log.info("database schema upgraded from %s to %s", before or "empty", after)


def _schema_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine_for(url).connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


class SchemaUpgrade:
    """``migrate``, waiting for a database that is not up yet. The web app runs it on a thread of its own
    (``start``), so that it starts, and serves live and image analysis, without its database, and gets its
    schema once the database is back (``ready``); the forwarder waits for it (``run``)."""

    def __init__(self, url: str):
        self.url = url
        self.ready = threading.Event()
        self.problem = "the schema is not up to date yet"  # why not ready, for the health check

    def run(self, stop: threading.Event | None = None) -> bool:
        """Retry while the database is unreachable; False if ``stop`` was set first. Other errors (a broken
        migration) are raised: no retry would help."""
        delay_s = RETRY_S[0]
        while not self._try():
            if (stop or threading.Event()).wait(delay_s):
                return False
            delay_s = min(delay_s * 2, RETRY_S[1])
        return True

    def start(self) -> SchemaUpgrade:
        """Up to date now if the database answers (a normal start: ready before the first request); else
        retried on a thread of its own while the caller goes on."""
        if not self._try():
            threading.Thread(target=self._run_logged, name="schema-upgrade", daemon=True).start()
        return self

    def _try(self) -> bool:
        try:
            migrate(self.url)
        except exc.OperationalError as error:
            self.problem = f"unreachable ({type(error.orig).__name__}); schema upgrade retried"
            log.warning("database unavailable (%s); the schema upgrade is retried", type(error.orig).__name__)
            return False
        self.ready.set()
        return True

    def _run_logged(self) -> None:
        try:
            time.sleep(RETRY_S[0])  # start() has just tried
            self.run()
        except Exception as error:
            self.problem = f"the schema upgrade failed ({type(error).__name__}; see the log)"
            log.exception("schema upgrade failed")
