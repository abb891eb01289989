"""What the database said recently about a key or a session, so that checking a request's credentials does not
need the database every time: a short database outage does not stop live and image analysis, which need
nothing else from it.

An answer is trusted without asking again for ``fresh_s`` (the delay before a revocation or a sign-out made by
another process is seen here); after that the database is asked, and only if it cannot answer is the answer
still used, up to ``outage_s`` after it was last confirmed. Only "valid" answers are kept: an unknown key is
asked about every time, and a key made a second ago works at once."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)
T = TypeVar("T")
MAX_ENTRIES = 10_000  # keys and sessions in use at once per process: far more than any deployment has


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    confirmed_s: float  # the clock's reading when the database last said it is valid


class RecentlyVerified(Generic[T]):
    def __init__(self, fresh_s: float, outage_s: float, clock: Callable[[], float] = time.monotonic):
        self.fresh_s, self.outage_s, self.clock = fresh_s, max(outage_s, fresh_s), clock
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, name: str, load: Callable[[], T | None]) -> T | None:
        """The value for ``name``: remembered while fresh, else ``load()`` (the database), else, while the
        database is unreachable, the remembered one up to outage_s old. Raises the database's error when
        nothing recent enough is remembered."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(name)
        if entry is not None and now - entry.confirmed_s < self.fresh_s:
            return entry.value
        try:
            value = load()
        except DBAPIError as error:
            if entry is not None and now - entry.confirmed_s < self.outage_s:
                age_s = now - entry.confirmed_s
                log.warning("database unavailable (%s): credentials confirmed %.0f s ago still accepted", type(error.orig).__name__, age_s)
                return entry.value
            raise
        if value is None:
            with self._lock:
                self._entries.pop(name, None)
        else:
            self.remember(name, value, now)
        return value

    def remember(self, name: str, value: T, confirmed_s: float | None = None) -> None:
        """What the database has just confirmed (or just stored: a new session)."""
        with self._lock:
            self._entries[name] = _Entry(value, self.clock() if confirmed_s is None else confirmed_s)
            self._entries.move_to_end(name)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)

    def forget(self, matches: Callable[[str, T], bool]) -> None:
        """Drop what this process remembers that ``matches`` (a revocation or a sign-out made here is seen here at once)."""
        with self._lock:
            for name in [name for name, entry in self._entries.items() if matches(name, entry.value)]:
                del self._entries[name]
