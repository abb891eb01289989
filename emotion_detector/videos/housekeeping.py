"""What the workers remove on their own, so that what the notices promise holds: videos older than the
retention period (every row and file), and partial uploads a web process left when it died mid-upload."""

from __future__ import annotations

import datetime as dt
import logging
import time
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.videos.models import Video, utcnow
from emotion_detector.videos.service import INCOMING, NotFound, remove_video

log = logging.getLogger(__name__)


def sweep_expired_videos(session_factory: sessionmaker[Session], retention_days: float, now: dt.datetime | None = None) -> int:
    """Remove every video uploaded more than ``retention_days`` ago (0: keep them until deleted)."""
    if retention_days <= 0:
        return 0
    cutoff = (now or utcnow()) - dt.timedelta(days=retention_days)
    with session_factory() as session:
        expired = session.scalars(select(Video.id).where(Video.created_at < cutoff)).all()
    removed = 0
    for video_id in expired:
        try:
            remove_video(session_factory, video_id, owner=None)
            removed += 1
        except NotFound:  # another worker's sweep, or its owner, removed it meanwhile
            continue
    if removed:
        log.info("removed %d video(s) older than the retention period of %g days", removed, retention_days)
    return removed


def sweep_partial_uploads(storage_dir: Path, stale_after_s: float, now_s: float | None = None) -> int:
    """Remove ``.part`` files nobody has written to for ``stale_after_s`` (an upload in progress writes all the
    time, so its file is always fresh)."""
    now_s = time.time() if now_s is None else now_s
    removed = 0
    for partial in (storage_dir / INCOMING).glob("*.part"):
        try:
            if now_s - partial.stat().st_mtime > stale_after_s:
                partial.unlink()
                removed += 1
        except FileNotFoundError:  # finished (renamed) or removed meanwhile
            continue
    if removed:
        log.info("removed %d partial upload(s) left by a web process that stopped mid-upload", removed)
    return removed
