"""API keys: creation, lookup by the presented secret, revocation, and the table they live in.

Videos uploaded while sign-in is off belong to no key (every video is the one local user's then). Once sign-in
is required, the first key made takes them over (its maker is the person who ran the server without it), and
``adopt_unowned`` hands those uploaded later with sign-in off to a key named by an administrator.

A key is 256 random bits, so a fast hash (SHA-256) is enough to store it: there is nothing to guess
offline that a slow hash would protect. The database keeps the hash and the first characters for display."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import DateTime, String, func, select, update
from sqlalchemy.orm import Mapped, Session, mapped_column, sessionmaker

from emotion_detector.videos.db import rowcount
from emotion_detector.videos.models import Base, Video, utcnow

KEY_PREFIX = "edk_"  # recognisable in logs and secret scanners
DISPLAY_CHARS = 10  # "edk_" and six characters: enough to tell keys apart in a list, useless to an attacker
MAX_NAME_CHARS = 64


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # the owner id on videos
    name: Mapped[str] = mapped_column(String(MAX_NAME_CHARS))
    display: Mapped[str] = mapped_column(String(16))
    secret_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=False), default=utcnow)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=False))


@dataclass(frozen=True)
class NewKey:
    id: str
    name: str
    secret: str  # shown once; only its hash is stored
    adopted_videos: int = 0  # uploaded while sign-in was off, now this key's


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class Keys:
    def __init__(self, sessions: sessionmaker[Session]):
        self.sessions = sessions

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

    def verify(self, secret: str) -> ApiKey | None:
        """The live key this secret belongs to; None for an unknown or revoked one."""
        if not secret.startswith(KEY_PREFIX) or len(secret) > 128:
            return None
        with self.sessions() as session:
            key = session.scalar(select(ApiKey).where(ApiKey.secret_sha256 == _digest(secret)))
        return key if key is not None and key.revoked_at is None else None

    def active(self, key_id: str) -> ApiKey | None:
        """The key a signed-in session names, while it is not revoked."""
        with self.sessions() as session:
            key = session.get(ApiKey, key_id)
        return key if key is not None and key.revoked_at is None else None

    def list(self) -> Sequence[ApiKey]:
        with self.sessions() as session:
            return session.scalars(select(ApiKey).order_by(ApiKey.created_at)).all()

    def revoke(self, key_id_or_display: str) -> ApiKey | None:
        with self.sessions.begin() as session:
            key = _find(session, key_id_or_display)
            if key is not None and key.revoked_at is None:
                key.revoked_at = utcnow()
            return key

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
