"""Alembic environment: the URL comes from the Alembic config's sqlalchemy.url when set (emotion_detector.videos.db
sets it), else from the app's settings (EMOTION_DATABASE_URL).

Every web and video worker process upgrades the schema when it starts, so on a fresh database several run
at once: they take turns (a PostgreSQL advisory lock, a file lock beside a SQLite file), and each reads the
schema's version only once it holds the lock, so the first creates the tables and the others find them."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import context
from sqlalchemy import Connection, engine_from_config, pool, text

from emotion_detector.accounts import keys as _api_keys  # noqa: F401  (their tables are part of the metadata)
from emotion_detector.edge import models as _edge_models  # noqa: F401
from emotion_detector.settings import Settings
from emotion_detector.videos.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url") or Settings().database_url
target_metadata = Base.metadata


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True, render_as_batch=url.startswith("sqlite"))
    with context.begin_transaction():
        context.run_migrations()


MIGRATION_LOCK_KEY = 0x656D6F74  # PostgreSQL advisory lock id ("emot"), held for the migration transaction


@contextlib.contextmanager
def sqlite_file_lock(database_url: str) -> Iterator[None]:
    database = database_url.split("///", 1)[1] if "///" in database_url else ""
    if not database or database == ":memory:":
        yield
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)
    with open(Path(database).with_name(Path(database).name + ".migrate-lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, also if this process dies
        yield


def run_migrations_online() -> None:
    connectable = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with sqlite_file_lock(url) if url.startswith("sqlite") else contextlib.nullcontext(), connectable.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=url.startswith("sqlite"))
        with context.begin_transaction():
            take_turns(connection)
            context.run_migrations()


def take_turns(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY})


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
