"""Leases, in process on a temp SQLite database: every task of a video job (segment, part render,
finalisation) is claimed by one worker at a time, kept by heartbeats, taken over when its worker stops, and
its work stored only while its lease and its run of the job hold. Then whole jobs through the task
functions with an in-memory queue (the analysis stubbed, the drawing real): person ids are stored as the
segments are joined, parts are rendered by their own tasks, and a render whose worker died is queued again
by the sweep and gives the same annotated video."""

from __future__ import annotations

import datetime as dt
import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import av
import numpy as np
import pytest
from sqlalchemy import select, update

from emotion_detector.pipeline import Face, FrameAnalysis, gender_probabilities
from emotion_detector.settings import Settings
from emotion_detector.videos import jobs, leases, steps
from emotion_detector.videos.db import migrate, sessions
from emotion_detector.videos.leases import Database
from emotion_detector.videos.models import (
    Finalisation,
    JobState,
    Observation,
    RenderTask,
    Segment,
    TaskState,
    Video,
    utcnow,
)
from emotion_detector.videos.probe import probe
from emotion_detector.videos.render import parts_dir
from emotion_detector.videos.summary import join_tracks
from tests.conftest import SHARED
from tests.videos.test_summary import HAPPY, SAD, rows_for

KINDS = [Segment, RenderTask, Finalisation]
SINGLE_FACE = SHARED / "media" / "videos" / "single_face.mp4"  # 72 frames, 640x360, 30 fps


@pytest.fixture
def db(tmp_path) -> Database:
    url = f"sqlite:///{tmp_path / 'jobs.db'}"
    migrate(url)
    return Database(Settings(database_url=url, job_stale_after_s=60, segment_seconds=0.5), sessions(url))


def add_video(
    db: Database, video_id: str = "v", segments: int = 3, status: JobState = JobState.RUNNING, source: Path | None = None
) -> None:
    info = probe(source or SINGLE_FACE, 60)
    length = info.frame_count // segments
    with db.sessions.begin() as session:
        video = Video(
            id=video_id,
            filename="clip.mp4",
            source_path=str(source or "/nowhere/clip.mp4"),
            status=status,
            width=info.width,
            height=info.height,
            fps=info.fps,
            frame_count=info.frame_count,
            duration_s=info.duration_s,
            started_at=utcnow(),
            heartbeat_at=utcnow(),
        )
        bounds = [(i * length, info.frame_count if i == segments - 1 else (i + 1) * length) for i in range(segments)]
        video.segments = [
            Segment(index=i, start_frame=s, end_frame=e, overlap_end_frame=min(info.frame_count, e + 6)) for i, (s, e) in enumerate(bounds)
        ]
        video.renders = [RenderTask(index=i) for i in range(segments)]
        video.finalisation = Finalisation(index=0)
        session.add(video)


def age(db: Database, kind, seconds: float, video_id: str = "v") -> None:
    """What a dead worker leaves behind: a lease whose last heartbeat is ``seconds`` old."""
    with db.sessions.begin() as session:
        session.execute(update(kind).where(kind.video_id == video_id).values(heartbeat_at=utcnow() - dt.timedelta(seconds=seconds)))


def state(db: Database, kind, index: int = 0, video_id: str = "v") -> tuple[str, int]:
    with db.sessions() as session:
        row = session.scalar(select(kind).where(kind.video_id == video_id, kind.index == index))
        return row.status, row.attempts


# ---- the lease itself ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.__tablename__)
def test_a_task_is_held_by_one_worker_until_its_heartbeats_stop_then_taken_over(db, kind):
    add_video(db)
    first = leases.claim(db, kind, "v", 0)
    assert first is not None and first.attempt == 1 and first.job_attempt == 0
    assert leases.claim(db, kind, "v", 0) is None  # held
    assert leases.heartbeat(db, first)

    age(db, kind, 61)  # its worker died
    second = leases.claim(db, kind, "v", 0)
    assert second is not None and second.attempt == 2
    assert state(db, kind) == (TaskState.RUNNING, 2)
    # The first worker was only slow: it learns at its next heartbeat, and its writes change nothing.
    assert not leases.heartbeat(db, first)
    leases.release(db, first)
    with db.sessions.begin() as session:
        assert not leases.finish(session, first)
    assert state(db, kind) == (TaskState.RUNNING, 2)

    with db.sessions.begin() as session:
        assert leases.finish(session, second)
    assert state(db, kind) == (TaskState.DONE, 2)
    age(db, kind, 3600)
    assert leases.claim(db, kind, "v", 0) is None  # done stays done


def test_a_released_task_can_be_claimed_again_at_once(db):
    add_video(db)
    lease = leases.claim(db, RenderTask, "v", 1)
    leases.release(db, lease)
    assert state(db, RenderTask, 1) == (TaskState.PENDING, 1)
    assert leases.claim(db, RenderTask, "v", 1).attempt == 2


@pytest.mark.parametrize("change", ["cancelled", "retried", "deleted"])
def test_work_for_a_run_that_was_cancelled_retried_or_deleted_is_dropped(db, change):
    add_video(db)
    lease = leases.claim(db, Segment, "v", 0)
    with db.sessions.begin() as session:
        video = session.get(Video, "v")
        if change == "cancelled":
            video.status = JobState.CANCELLED
        elif change == "retried":
            video.attempts += 1  # VideoService.retry: the same row, a new run
        else:
            session.delete(video)
    assert not leases.heartbeat(db, lease)
    with db.sessions.begin() as session:
        assert not leases.finish(session, lease)


def test_no_task_of_a_job_that_is_not_running_can_be_claimed(db):
    for status in (JobState.QUEUED, JobState.DONE, JobState.FAILED, JobState.CANCELLED):
        add_video(db, status.value, status=status)
        assert all(leases.claim(db, kind, status.value, 0) is None for kind in KINDS), status


def test_the_heartbeat_is_throttled_and_says_when_the_lease_is_lost(db):
    add_video(db)
    lease = leases.claim(db, Segment, "v", 0)
    beat = leases.Heartbeat(db, lease, interval_s=0)
    assert beat(frames_done=5)
    with db.sessions() as session:
        assert session.scalar(select(Segment.frames_done).where(Segment.index == 0)) == 5
    throttled = leases.Heartbeat(db, lease, interval_s=3600)
    age(db, Segment, 61)
    leases.claim(db, Segment, "v", 0)  # taken over
    assert throttled()  # not asked: within its interval
    with pytest.raises(leases.LeaseLost):
        beat.or_stop()


def test_the_sweep_finds_the_tasks_of_dead_workers_of_every_kind_and_jobs_nobody_works_on(db):
    add_video(db, "dead")
    for kind in KINDS:
        leases.claim(db, kind, "dead", 0)
    age(db, Segment, 61, "dead")
    age(db, RenderTask, 61, "dead")
    age(db, Finalisation, 61, "dead")
    add_video(db, "alive")
    leases.claim(db, Segment, "alive", 0)
    add_video(db, "forgotten")  # pending work, nothing held, last queued long ago
    with db.sessions.begin() as session:
        session.execute(update(Video).where(Video.id == "forgotten").values(heartbeat_at=utcnow() - dt.timedelta(seconds=120)))
    add_video(db, "cancelled", status=JobState.CANCELLED)
    for kind in KINDS:
        leases.claim(db, kind, "cancelled", 0)
    age(db, Segment, 61, "cancelled")

    abandoned = leases.sweep(db)
    assert sorted((kind.__tablename__, video_id, index) for kind, video_id, index in abandoned.tasks) == [
        ("finalisations", "dead", 0),
        ("render_tasks", "dead", 0),
        ("segments", "dead", 0),
    ]
    assert abandoned.jobs == ["forgotten"]


# ---- person ids, stored as soon as they are final ------------------------------------------------------


def store_rows(db: Database, rows) -> None:
    with db.sessions.begin() as session:
        for row in rows:
            x1, y1, x2, y2 = row.box_xyxy
            session.add(
                Observation(
                    video_id="v",
                    segment_index=row.segment_index,
                    frame_index=row.frame_index,
                    local_track=row.local_track,
                    in_overlap=row.in_overlap,
                    x1=x1,
                    y1=y1,
                    x2=x2,
                    y2=y2,
                    score=row.score,
                    emotion=list(row.emotion),
                    age_years=row.age_years,
                    female_probability=row.female_probability,
                )
            )
        for index in {row.segment_index for row in rows}:
            session.execute(update(Segment).where(Segment.index == index).values(status=TaskState.DONE))


def stored_persons(db: Database) -> dict[tuple[int, int], int | None]:
    with db.sessions() as session:
        return {(o.segment_index, o.local_track): o.person for o in session.scalars(select(Observation))}


def test_segments_are_joined_in_order_as_they_finish_and_their_person_ids_are_those_of_the_whole_video(db):
    add_video(db, segments=3)  # frames 0-23, 24-47, 48-71; each also analyses 6 frames past its end
    by_segment = {
        # track 2 is seen only in segment 0's overlap: it gets its id when segment 1 is joined (its track 4)
        0: [*rows_for(0, 1, range(0, 30), x=0, owned_until=24), *rows_for(0, 2, range(25, 30), x=300, owned_until=24, emotion=SAD)],
        1: [*rows_for(1, 3, range(24, 54), x=1, owned_until=48), *rows_for(1, 4, range(24, 40), x=301, owned_until=48, emotion=SAD)],
        2: [*rows_for(2, 9, range(48, 72), x=2, owned_until=99), *rows_for(2, 8, range(60, 72), x=500, owned_until=99, emotion=HAPPY)],
    }
    everything = [row for rows in by_segment.values() for row in rows]

    store_rows(db, by_segment[2])  # finished first: nothing before it is joined, so it waits
    assert steps.join_ready_segments(db, "v") == range(0)
    assert set(stored_persons(db).values()) == {None}
    store_rows(db, by_segment[0])
    assert steps.join_ready_segments(db, "v") == range(0, 1)
    assert steps.join_ready_segments(db, "v") == range(0)  # nothing new
    assert stored_persons(db)[(0, 1)] == 1 and stored_persons(db)[(0, 2)] is None
    store_rows(db, by_segment[1])
    assert steps.join_ready_segments(db, "v") == range(1, 3)  # 1, and 2 that was waiting for it

    assert stored_persons(db) == join_tracks(everything)  # joined piecewise and resumed: as joined at once
    assert stored_persons(db)[(0, 1)] == stored_persons(db)[(1, 3)] == stored_persons(db)[(2, 9)]
    assert stored_persons(db)[(0, 2)] == stored_persons(db)[(1, 4)] == 2
    with db.sessions() as session:
        assert session.get(Video, "v").segments_joined == 3


def test_joining_one_segment_at_a_time_numbers_people_as_joining_all_at_once(db):
    # New faces in every segment, some of them tied for their first frame.
    add_video(db, segments=3)
    rows = [
        *rows_for(0, 5, range(0, 30), x=0, owned_until=24),
        *rows_for(0, 6, range(10, 30), x=100, owned_until=24),
        *rows_for(1, 2, range(24, 54), x=0, owned_until=48),
        *rows_for(1, 1, range(30, 54), x=200, owned_until=48),
        *rows_for(1, 3, range(30, 40), x=400, owned_until=48),
        *rows_for(2, 7, range(48, 72), x=200, owned_until=99),
        *rows_for(2, 8, range(50, 72), x=600, owned_until=99),
    ]
    for index in range(3):
        store_rows(db, [row for row in rows if row.segment_index == index])
        assert steps.join_ready_segments(db, "v") == range(index, index + 1)
    assert stored_persons(db) == join_tracks(rows)


# ---- whole jobs through the task functions, with an in-memory queue ----------------------------------


class Queue:
    """Stands in for Celery: tasks queued by the code under test, run in priority order (segments first)."""

    def __init__(self, monkeypatch) -> None:
        self.waiting: list[tuple[str, tuple]] = []
        for name in ("start", "segment", "render", "finalise"):
            monkeypatch.setattr(getattr(jobs, name), "delay", lambda *args, name=name: self.waiting.append((name, args)))

    def run(self, until: Callable[[str, tuple], bool] = lambda _name, _args: False) -> None:
        """Run the queue empty, or until ``until(task, args)`` says stop before running that task."""
        order = ("start", "segment", "render", "finalise")
        while self.waiting:
            name, args = min(self.waiting, key=lambda task: order.index(task[0]))
            if until(name, args):
                return
            self.waiting.remove((name, args))
            getattr(jobs, name)(*args)


def fake_analysis(_analyzer, _source, _fps, start: int, stop: int, _every_n: int = 1, on_progress=None) -> list[FrameAnalysis]:
    """Stands in for analyse_segment: one face, still, on every frame (the drawing is what these tests are about)."""
    if on_progress is not None:
        on_progress(stop - start)
    return [
        FrameAnalysis(
            [Face((200.0 + f, 60.0, 330.0 + f, 200.0), 0.9, np.array(HAPPY), 31.0, gender_probabilities(0.8), track_id=1)],
            640,
            360,
            {},
            frame_index=f,
        )
        for f in range(start, stop)
    ]


class NoModels:
    def specs(self) -> dict:
        return {}

    def uncertain_below(self, _head: str) -> float:
        return 0.0


@pytest.fixture
def queue(db, monkeypatch) -> Queue:
    context = jobs.WorkerContext(
        db.settings,
        db.sessions,
        analyzer=SimpleNamespace(
            detector=SimpleNamespace(name="stub"), client=NoModels(), search=SimpleNamespace(min_face_px_for=lambda width, height: 20.0)
        ),
    )
    monkeypatch.setattr(jobs, "database", lambda: db)
    monkeypatch.setattr(jobs, "context", lambda: context)
    monkeypatch.setattr(jobs, "analyse_segment", fake_analysis)
    return Queue(monkeypatch)


def queued_video(db: Database, tmp_path: Path, video_id: str) -> Path:
    source = tmp_path / video_id / "source.mp4"
    source.parent.mkdir()
    shutil.copyfile(SINGLE_FACE, source)
    info = probe(source, 60)
    with db.sessions.begin() as session:
        session.add(
            Video(
                id=video_id,
                filename="clip.mp4",
                source_path=str(source),
                width=info.width,
                height=info.height,
                fps=info.fps,
                frame_count=info.frame_count,
                duration_s=info.duration_s,
            )
        )
    return source


def decoded(path: Path) -> list[tuple[int, str]]:
    with av.open(str(path)) as container:
        return [(frame.pts, hashlib.sha256(frame.to_ndarray(format="rgb24").tobytes()).hexdigest()) for frame in container.decode(video=0)]


def test_a_job_runs_as_leased_tasks_and_its_parts_are_drawn_by_render_tasks(db, queue, tmp_path):
    source = queued_video(db, tmp_path, "v")
    queue.waiting.append(("start", ("v",)))
    ran: list[str] = []
    queue.run(until=lambda name, _args: ran.append(name) and False)

    assert ran == ["start", "segment", "segment", "segment", "render", "render", "render", "finalise"]
    with db.sessions() as session:
        video = session.get(Video, "v")
        assert video.status == JobState.DONE and video.segments_joined == 3
        assert all(task.status == TaskState.DONE for task in [*video.segments, *video.renders, video.finalisation])
        assert session.scalar(select(Observation.person).distinct()) == 1
        assert video.summary["main_people"] == [1] and video.summary["segments"] == 3
    frames = decoded(Path(video.annotated_path))
    assert len(frames) == 72 and [pts for pts, _ in frames] == sorted({pts for pts, _ in frames})
    assert not parts_dir(source, 0).exists()  # the parts are gone once joined


def test_a_render_whose_worker_died_is_queued_again_by_the_sweep_and_gives_the_same_video(db, queue, tmp_path):
    queued_video(db, tmp_path, "clean")
    queue.waiting.append(("start", ("clean",)))
    queue.run()

    source = queued_video(db, tmp_path, "crashed")
    queue.waiting.append(("start", ("crashed",)))
    queue.run(until=lambda name, args: name == "render" and args == ("crashed", 1))
    # A worker took part 1 and died half-way: its lease, a scratch file; the queue lost the message.
    dead = leases.claim(db, RenderTask, "crashed", 1)
    queue.waiting.remove(("render", ("crashed", 1)))
    (parts_dir(source, 0) / "00001.deadbeef.part").write_bytes(b"half a part")
    queue.run()
    with db.sessions() as session:
        assert session.get(Video, "crashed").status == JobState.RUNNING  # waiting for part 1
    assert jobs.recover(db) == 0  # its heartbeat is still fresh

    age(db, RenderTask, 61, "crashed")
    assert jobs.recover(db) == 1
    assert queue.waiting == [("render", ("crashed", 1))]
    queue.run()

    assert state(db, RenderTask, 1, "crashed") == (TaskState.DONE, dead.attempt + 1)
    with db.sessions() as session:
        clean, crashed = session.get(Video, "clean"), session.get(Video, "crashed")
        assert crashed.status == JobState.DONE
        assert decoded(Path(crashed.annotated_path)) == decoded(Path(clean.annotated_path))


def test_a_job_cancelled_between_its_tasks_stops_and_leaves_no_parts(db, queue, tmp_path):
    source = queued_video(db, tmp_path, "v")
    queue.waiting.append(("start", ("v",)))
    queue.run(until=lambda name, _args: name == "render")
    with db.sessions.begin() as session:
        session.get(Video, "v").status = JobState.CANCELLED
    jobs.delete_parts(str(source))
    queue.run()
    with db.sessions() as session:
        video = session.get(Video, "v")
        assert (video.status, video.annotated_path) == (JobState.CANCELLED, None)
        assert all(task.status == TaskState.PENDING for task in video.renders)
    assert not parts_dir(source, 0).exists()
