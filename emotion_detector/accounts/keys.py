"""API keys and the sign-in sessions made with them: creation, lookup by the presented secret, revocation, and
the tables they live in.

Videos uploaded while sign-in is off belong to no key (every video is the one local user's then). Once sign-in
is required, the first key made takes them over (its maker is the person who ran the server without it), and
``adopt_unowned`` hands those uploaded later with sign-in off to a key named by an administrator.

A key is 256 random bits, so a fast hash (SHA-256) is enough to store it: there is nothing to guess
offline that a slow hash would protect. The database keeps the hash and the first characters for display.
A page's session is a row too (the cookie holds a random token, the row its hash), so that signing out, "sign
out everywhere" and revoking the key end it on the server, not only in the browser that signed out; and it
ends ``lifetime_s`` after signing in, whatever the cookie says."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import DateTime, ForeignKey, String, delete, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from emotion_detector.accounts.recent import RecentlyVerified
from emotion_detector.videos.db import rowcount
from emotion_detector.videos.models import Base, Video, utcnow

KEY_PREFIX = "edk_"  # recognisable in logs and secret scanners
DISPLAY_CHARS = 10  # "edk_" and six characters: enough to tell keys apart in a list, useless to an attacker
MAX_NAME_CHARS = 64
MAX_SECRET_CHARS = 128


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the owner id on videos
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    display: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=False), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=False))


class WebSession(Base):
    """A page's sign-in: alive while its row is (sign-out deletes it) and until ``expires_at``."""

    __tablename__ = "web_sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_id: Mapped[str] = mapped_column(String(32), ForeignKey("api_keys.id", ondelete="CASCADE"), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=False), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=False), index=True)


@dataclass(frozen=True)
class NewKey:
    id: str
    name: str
    secret: str  # shown once; only its hash is stored
    adopted_videos: int = 0  # uploaded while sign-in was off, now this key's


@dataclass(frozen=True)
class Holder:
    """Whom a valid key or session belongs to."""

    key_id: str
    name: str
    expires_at: dt.datetime | None = None  # a session's end (naive UTC); None for a key


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Keys:
    """Keys and sessions in the database; with ``recent``, valid answers are remembered for a while (the web
    app: see recent.py) and what this object revokes or ends is forgotten at once."""

    def __init__(self, sessions: sessionmaker[Session], recent: RecentlyVerified[Holder] | None = None):
        self.sessions = sessions
        self.recent = recent

    def create(self, name: str) -> NewKey:
        """A new key; the first one ever made also takes over the videos uploaded while sign-in was off."""
        name = name.strip()
        if not name or len(name) > MAX_NAME_CHARS:
            raise ValueError(f"a key's name is 1 to {MAX_NAME_CHARS} characters")
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = ApiKey(id=uuid.uuid4().hex, name=name, display=secret[:DISPLAY_CHARS], secret_sha256=_digest(secret))
        with self.sessions.begin() as session:
            first = session.scalar(select(func.count()).select_from(ApiKey)) == 0
            session.add(key)
            session.flush()
            adopted = _adopt_unowned(session, key.id) if first else 0
        return NewKey(key.id, name, secret, adopted)

    def verify(self, secret: str) -> Holder | None:
        """Whose live key this secret is; None for an unknown or revoked one."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > MAX_SECRET_CHARS:
            return None
        digest = _digest(secret)

        def load() -> Holder | None:
            with self.sessions() as session:
                key = session.scalar(select(ApiKey).where(ApiKey.secret_sha256 == digest, ApiKey.revoked_at.is_(None)))
            return Holder(key.id, key.name) if key is not None else None

        return self._recently(f"key:{digest}", load)

    def list(self) -> Sequence[ApiKey]:
        with self.sessions() as session:
            return session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()

    def revoke(self, key_id_or_display: str) -> ApiKey | None:
        """Revoke a key and end its sessions."""
        with self.sessions.begin() as session:
            key = _find(session, key_id_or_display)
            if key is not None:
                if key.revoked_at is None:
                    key.revoked_at = utcnow()
                session.execute(delete(WebSession).where(WebSession.key_id == key.id))
        if key is not None:
            self._forget_key(key.id)
        return key

    # ---- sessions ----------------------------------------------------------------------------------------

    def start_session(self, holder: Holder, lifetime_s: float) -> str:
        """A new session for this key's holder, ending ``lifetime_s`` from now: the token for the cookie."""
        token = secrets.token_urlsafe(32)
        now = utcnow()
        expires_at = now + dt.timedelta(seconds=lifetime_s)
        with self.sessions.begin() as session:
            session.execute(delete(WebSession).where(WebSession.expires_at <= now))  # ended ones, of every key
            session.add(WebSession(token_sha256=_digest(token), key_id=holder.key_id, created_at=now, expires_at=expires_at))
        if self.recent is not None:
            self.recent.remember(f"session:{_digest(token)}", Holder(holder.key_id, holder.name, expires_at))
        return token

    def session(self, token: str) -> Holder | None:
        """Whose session this token is, while it has not ended (signed out, expired, or its key revoked)."""
        if not token or len(token) > MAX_SECRET_CHARS:
            return None
        digest = _digest(token)

        def load() -> Holder | None:
            query = (
                select(ApiKey.id, ApiKey.name, WebSession.expires_at)
                .join(WebSession, WebSession.key_id == ApiKey.id)
                .where(WebSession.token_sha256 == digest, ApiKey.revoked_at.is_(None))
            )
            with self.sessions() as session:
                found = session.execute(query).first()
            return Holder(found.id, found.name, found.expires_at) if found is not None else None

        holder = self._recently(f"session:{digest}", load)
        return holder if holder is not None and holder.expires_at is not None and utcnow() < holder.expires_at else None

    def end_session(self, token: str) -> None:
        digest = _digest(token)
        with self.sessions.begin() as session:
            session.execute(delete(WebSession).where(WebSession.token_sha256 == digest))
        if self.recent is not None:
            self.recent.forget(lambda name, _: name == f"session:{digest}")

    def end_sessions(self, key_id: str) -> int:
        """Sign out everywhere: end every session of this key. How many there were."""
        with self.sessions.begin() as session:
            ended = rowcount(session.execute(delete(WebSession).where(WebSession.key_id == key_id)))
        if self.recent is not None:
            self.recent.forget(lambda name, holder: name.startswith("session:") and holder.key_id == key_id)
        return ended

    def _recently(self, name: str, load: Callable[[], Holder | None]) -> Holder | None:
        return load() if self.recent is None else self.recent.get(name, load)

    def _forget_key(self, key_id: str) -> None:
        if self.recent is not None:
            self.recent.forget(lambda _, holder: holder.key_id == key_id)

    def adopt_unowned(self, key_id_or_display: str) -> tuple[ApiKey, int] | None:
        """Gives the videos that belong to no key (uploaded while sign-in was off) to this active key; None if
        there is no such key."""
        with self.sessions.begin() as session:
            key = _find(session, key_id_or_display)
            if key is None or key.revoked_at is not None:
                return None
            return key, _adopt_unowned(session, key.id)


def _find(session: Session, key_id_or_display: str) -> ApiKey | None:
    return session.get(ApiKey, key_id_or_display) or session.scalar(select(ApiKey).where(ApiKey.display == key_id_or_display))


def _adopt_unowned(session: Session, key_id: str) -> int:
    return rowcount(session.execute(update(Video).where(Video.owner_id.is_(None)).values(owner_id=key_id)))
