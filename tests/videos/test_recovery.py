"""Recovery, on a real (SQLite) database: which jobs the sweep queues again, and that the work of a run
superseded meanwhile (cancelled, retried) is dropped."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import numpy as np
import pytest
from sqlalchemy import func, select

from emotion_detector.pipeline import Face, FrameAnalysis, gender_probabilities
from emotion_detector.settings import Settings
from emotion_detector.videos import finalise as finalise_step
from emotion_detector.videos import jobs
from emotion_detector.videos.db import migrate, sessions
from emotion_detector.videos.models import Finalisation, Observation, RenderTask, Segment, Video, utcnow
from emotion_detector.videos.render import OverlayTimeline, part_path, parts_dir, render_part


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
    queued: list[tuple[str, str, int]] = []
    monkeypatch.setattr(jobs, "database", lambda: ctx)
    monkeypatch.setattr(jobs.segment, "delay", lambda video_id, index: queued.append(("segment", video_id, index)))
    monkeypatch.setattr(jobs.render, "delay", lambda video_id, index: queued.append(("render", video_id, index)))
    monkeypatch.setattr(jobs.finalise, "delay", lambda video_id: pytest.fail("parts are still to be drawn"))
    jobs.start("v")
    assert queued == [("segment", "v", 1), ("segment", "v", 2), ("render", "v", 0)]  # segment 0 is joined: its part can be drawn
    with ctx.sessions() as session:
        assert utcnow() - session.get(Video, "v").heartbeat_at < dt.timedelta(seconds=5)  # not re-queued for a while


def _retried_while_analysing(sessions):
    """Stands in for analyse_segment: while 'analysing', the user cancels and retries the job (the retry's
    segment rows start their attempt count at 1 again, like this run's), then returns one analysed face."""

    def analyse(_analyzer, _path, _fps, start, _stop, _every_n=1, on_progress=None):
        with sessions.begin() as session:
            video = session.get(Video, "v1")
            for row in video.segments:
                session.delete(row)
            video.attempts += 1  # what VideoService.retry does, with the segments `start` then plans afresh
            session.flush()
            video.segments = [Segment(index=0, start_frame=0, end_frame=100, overlap_end_frame=106, status="running", attempts=1)]
        face = Face((0.0, 0.0, 10.0, 10.0), 0.9, np.full(7, 1 / 7), 30.0, gender_probabilities(0.5), track_id=1)
        return [FrameAnalysis([face], 640, 360, {}, frame_index=start)]

    return analyse


def test_a_segment_whose_job_was_retried_meanwhile_writes_nothing(ctx, monkeypatch):
    add_running_video(ctx, "v1", queued_ago_s=0, segments=[("pending", None)])
    monkeypatch.setattr(jobs, "context", lambda: jobs.WorkerContext(ctx.settings, ctx.sessions, analyzer=None))
    monkeypatch.setattr(jobs, "analyse_segment", _retried_while_analysing(ctx.sessions))
    monkeypatch.setattr(jobs, "advance", lambda video_id: pytest.fail("a dropped segment must not move the job on"))

    jobs.segment("v1", 0)  # claims attempt 1 of the first run's segment, and finishes after the retry

    with ctx.sessions() as session:
        retried = session.scalar(select(Segment).where(Segment.video_id == "v1"))
        assert (retried.status, retried.attempts) == ("running", 1)  # the retry's segment, untouched
        assert session.scalar(select(func.count()).select_from(Observation)) == 0


class _NoModels:
    def specs(self) -> dict:
        return {}

    def uncertain_below(self, head: str) -> float:
        return 0.0


def retry_job(ctx: jobs.Database, video_id: str) -> None:
    """VideoService.retry, and the new run's start: the job runs again as a new attempt."""
    with ctx.sessions.begin() as session:
        video = session.get(Video, video_id)
        video.status, video.attempts = "running", video.attempts + 1


@pytest.mark.parametrize("retried_during", ["join", "failing join"])
def test_a_finalisation_whose_job_was_retried_meanwhile_neither_finishes_nor_fails_the_new_run(
    ctx, monkeypatch, tmp_path, shared_dir, retried_during
):
    add_running_video(ctx, "v1", queued_ago_s=0, segments=[("done", 0)])
    source = tmp_path / "v1" / "clip.mp4"
    source.parent.mkdir()
    source.write_bytes((shared_dir / "media" / "videos" / "single_face.mp4").read_bytes())
    with ctx.sessions.begin() as session:
        video = session.get(Video, "v1")
        video.source_path, video.frame_count, video.segments_joined = str(source), 72, 1
        video.segments[0].end_frame = video.segments[0].overlap_end_frame = 72
        video.renders = [RenderTask(index=0, status="done")]
        video.finalisation = Finalisation(index=0)
    parts_dir(source, 0).mkdir()
    render_part(source, part_path(parts_dir(source, 0), 0), OverlayTimeline({}, 1), 30.0, range(72))  # drawn by its render task
    monkeypatch.setattr(
        jobs,
        "context",
        lambda: jobs.WorkerContext(
            ctx.settings,
            ctx.sessions,
            analyzer=SimpleNamespace(
                detector=SimpleNamespace(name="yunet"),
                client=_NoModels(),
                search=SimpleNamespace(min_face_px_for=lambda width, height: 20.0),
            ),
        ),
    )
    join = finalise_step.join_parts
    if retried_during == "join":
        monkeypatch.setattr(finalise_step, "join_parts", lambda *args: (join(*args), retry_job(ctx, "v1")))
    else:

        def retried_then_broken(*_args, **_kwargs):
            retry_job(ctx, "v1")
            raise OSError("disk full")

        monkeypatch.setattr(finalise_step, "join_parts", retried_then_broken)

    jobs.finalise("v1")

    with ctx.sessions() as session:
        video = session.get(Video, "v1")
        assert (video.status, video.error, video.summary, video.annotated_path) == ("running", None, None, None)
    assert not (source.parent / "annotated.mp4").exists()


def test_a_finalisation_delivered_again_after_its_commit_only_removes_the_parts_left_behind(ctx, monkeypatch, tmp_path):
    # The worker died between the commit and removing the parts folder; Celery (acks_late) delivers the task again.
    add_running_video(ctx, "v1", queued_ago_s=0, segments=[("done", 0)])
    source = tmp_path / "v1" / "clip.mp4"
    parts_dir(source, 0).mkdir(parents=True)
    part_path(parts_dir(source, 0), 0).write_bytes(b"part")
    with ctx.sessions.begin() as session:
        video = session.get(Video, "v1")
        video.source_path, video.status, video.summary = str(source), "done", {"frames": 300}
    monkeypatch.setattr(jobs, "context", lambda: jobs.WorkerContext(ctx.settings, ctx.sessions, analyzer=None))

    jobs.finalise("v1")

    assert not parts_dir(source, 0).exists()
    with ctx.sessions() as session:
        assert (session.get(Video, "v1").status, session.get(Video, "v1").summary) == ("done", {"frames": 300})
