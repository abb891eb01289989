"""The recovery sweep's decisions, on a real (SQLite) database: which jobs it queues again."""

from __future__ import annotations

import datetime as dt

import pytest

from emotion_detector.settings import Settings
from emotion_detector.videos import jobs
from emotion_detector.videos.db import migrate, sessions
from emotion_detector.videos.models import Segment, Video, utcnow


@pytest.fixture
def ctx(tmp_path) -> jobs.Database:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    return jobs.Database(Settings(database_url=url, job_stale_after_s=60), sessions(url))


@pytest.fixture
def queued_starts(monkeypatch) -> list[str]:
    started: list[str] = []
    monkeypatch.setattr(jobs.start, "delay", started.append)  # what the sweep asks the queue for
    monkeypatch.setattr(jobs.segment, "delay", lambda *args: pytest.fail(f"no segment should be re-queued: {args}"))
    return started


def add_running_video(ctx: jobs.Database, video_id: str, queued_ago_s: float, segments: list[tuple[str, float | None]]) -> None:
    now = utcnow()
    with ctx.sessions.begin() as session:
        video = Video(
            id=video_id,
            filename="clip.mp4",
            source_path="/nowhere/clip.mp4",
            status="running",
            width=640,
            height=360,
            fps=30.0,
            frame_count=300,
            duration_s=10.0,
            started_at=now,
            heartbeat_at=now - dt.timedelta(seconds=queued_ago_s),
        )
        video.segments = [
            Segment(
                index=i,
                start_frame=i * 100,
                end_frame=(i + 1) * 100,
                overlap_end_frame=(i + 1) * 100 + 6,
                status=status,
                heartbeat_at=None if beat_ago_s is None else now - dt.timedelta(seconds=beat_ago_s),
            )
            for i, (status, beat_ago_s) in enumerate(segments)
        ]
        session.add(video)


def test_segments_planned_but_never_queued_are_queued_again(ctx, queued_starts):
    add_running_video(ctx, "lost", queued_ago_s=120, segments=[("pending", None), ("pending", None)])
    add_running_video(ctx, "just-queued", queued_ago_s=5, segments=[("pending", None), ("pending", None)])
    add_running_video(ctx, "busy", queued_ago_s=120, segments=[("running", 2), ("pending", None)])
    add_running_video(ctx, "half-done", queued_ago_s=120, segments=[("done", 90), ("pending", None)])
    assert jobs.recover(ctx) == 2
    assert sorted(queued_starts) == ["half-done", "lost"]


def test_start_queues_only_what_is_pending_and_marks_when(ctx, monkeypatch):
    add_running_video(ctx, "v", queued_ago_s=120, segments=[("done", 90), ("pending", None), ("pending", None)])
    queued: list[tuple[str, int]] = []
    monkeypatch.setattr(jobs, "database", lambda: ctx)
    monkeypatch.setattr(jobs.segment, "delay", lambda video_id, index: queued.append((video_id, index)))
    jobs.start("v")
    assert queued == [("v", 1), ("v", 2)]
    with ctx.sessions() as session:
        assert utcnow() - session.get(Video, "v").heartbeat_at < dt.timedelta(seconds=5)  # not re-queued for a while
