"""The edge command's bounded on-disk queue of events (DESIGN.md §2 "Edge"): every event is written here first
and deleted only once the broker has acknowledged it, so events made while the broker is unreachable, or
while the process was stopped, are sent later, in order. When more than ``max_events`` wait, the oldest
waiting ones are dropped and counted (the next status message reports the count).

Not thread-safe: the publisher guards it with its lock."""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, so the order of events is kept
    topic TEXT NOT NULL,
    payload BLOB NOT NULL
)
"""


class Outbox:
    """Rows are *waiting* until ``take`` hands them to the MQTT client, then *in flight* until ``ack``. Only
    waiting rows are dropped: an event in flight may still be delivered, and a dropped count must be exact."""

    def __init__(self, path: Path, max_events: int):
        if max_events < 1:
            raise ValueError(f"max_events must be >= 1, got {max_events!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.max_events = path, max_events
        # Autocommit: each append and delete is its own transaction, on disk when the call returns.
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")  # an append does not wait for a reader, nor the other way
        self._db.execute(SCHEMA)
        self._taken_up_to = 0  # rows up to this id were handed out in this process; left-overs of a past run are not
        self.dropped = 0  # waiting events dropped since this process opened the queue
        # Counted here, not by a COUNT(*) per call: the publisher asks after every event and acknowledgement.
        (rows,) = self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()
        self._rows: int = rows
        self._waiting: int = rows  # nothing handed out yet

    def close(self) -> None:
        self._db.close()

    def __len__(self) -> int:
        return self._rows

    @property
    def waiting(self) -> int:
        return self._waiting

    def append(self, topic: str, payload: bytes) -> int:
        """Queue one event; returns its id. Drops the oldest waiting events beyond the bound."""
        [(row_id,)] = self._db.execute("INSERT INTO outbox (topic, payload) VALUES (?, ?) RETURNING id", (topic, payload)).fetchall()
        self._rows += 1
        self._waiting += 1
        excess = self._waiting - self.max_events
        if excess > 0:
            self._db.execute(
                "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id > ? ORDER BY id LIMIT ?)", (self._taken_up_to, excess)
            )
            self.dropped += excess
            self._rows -= excess
            self._waiting -= excess
        return int(row_id)

    def take(self, limit: int) -> list[tuple[int, str, bytes]]:
        """The oldest waiting events, at most ``limit``, as (id, topic, payload); they are in flight from now."""
        rows = self._db.execute(
            "SELECT id, topic, payload FROM outbox WHERE id > ? ORDER BY id LIMIT ?", (self._taken_up_to, limit)
        ).fetchall()
        if rows:
            self._taken_up_to = rows[-1][0]
            self._waiting -= len(rows)
        return [(int(row_id), str(topic), bytes(payload)) for row_id, topic, payload in rows]

    def ack(self, row_id: int) -> None:
        """The broker has the event: it leaves the queue."""
        self._rows -= self._db.execute("DELETE FROM outbox WHERE id = ?", (row_id,)).rowcount
