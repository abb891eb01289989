"""Retention and dead uploads: what the workers remove on their own (on a real database and real files)."""

from __future__ import annotations

import datetime as dt
import os
import time

from sqlalchemy import func, select

from emotion_detector.videos.db import migrate, sessions
from emotion_detector.videos.housekeeping import sweep_expired_videos, sweep_partial_uploads
from emotion_detector.videos.models import Observation, Video, utcnow
from emotion_detector.videos.service import INCOMING


def add_video(session_factory, folder, video_id: str, age_days: float) -> None:
    (folder / video_id).mkdir(parents=True)
    source = folder / video_id / "source.mp4"
    source.write_bytes(b"video")
    (folder / video_id / "annotated.mp4").write_bytes(b"annotated")
    created = utcnow() - dt.timedelta(days=age_days)
    with session_factory.begin() as session:
        session.add(
            Video(
                id=video_id,
                filename="a.mp4",
                source_path=str(source),
                width=64,
                height=64,
                fps=25.0,
                frame_count=2,
                duration_s=0.1,
                created_at=created,
            )
        )
        session.flush()
        box = {"x1": 0.0, "y1": 0.0, "x2": 1.0, "y2": 1.0}
        probabilities = [0.1, 0.0, 0.0, 0.8, 0.0, 0.0, 0.1]
        session.add(
            Observation(
                video_id=video_id,
                segment_index=0,
                frame_index=0,
                local_track=1,
                **box,
                score=0.9,
                emotion=probabilities,
                age_years=30.0,
                female_probability=0.5,
            )
        )


def test_videos_past_the_retention_period_lose_every_row_and_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    migrate(url)
    factory = sessions(url)
    storage = tmp_path / "videos"
    add_video(factory, storage, "old", age_days=31)
    add_video(factory, storage, "new", age_days=29)
    assert sweep_expired_videos(factory, retention_days=30) == 1
    with factory() as session:
        assert session.scalars(select(Video.id)).all() == ["new"]
        assert session.scalar(select(func.count()).select_from(Observation).where(Observation.video_id == "old")) == 0
    assert not (storage / "old").exists() and (storage / "new" / "annotated.mp4").is_file()
    assert sweep_expired_videos(factory, retention_days=0) == 0  # 0: kept until deleted
    assert (storage / "new").is_dir()


def test_partial_uploads_nobody_writes_to_are_removed_and_live_ones_kept(tmp_path):
    incoming = tmp_path / INCOMING
    incoming.mkdir()
    dead, live = incoming / "dead.part", incoming / "live.part"
    dead.write_bytes(b"x" * 100)
    live.write_bytes(b"y" * 100)
    two_hours_ago = time.time() - 7200
    os.utime(dead, (two_hours_ago, two_hours_ago))
    assert sweep_partial_uploads(tmp_path, stale_after_s=3600) == 1
    assert not dead.exists() and live.exists()
    assert sweep_partial_uploads(tmp_path / "nothing-here", stale_after_s=3600) == 0
