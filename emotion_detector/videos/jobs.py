"""Video jobs on Celery workers:  celery -A emotion_detector.videos.jobs worker

    videos.start(id)            plan the segments, queue one task per segment
    videos.segment(id, index)   analyse one segment, then draw the annotated video's parts that can be drawn
                                (in the background, see parts.py); the last segment to finish queues finalise
    videos.finalise(id)         join tracks across segments, statistics, the parts still missing joined into
                                the annotated video; status done

Nothing is lost when a worker dies: tasks are acknowledged only after they ran (``acks_late``), a segment
is claimed with an atomic database lease that its worker keeps alive with heartbeats, and a sweep in every
worker re-queues segments (and finalisations) whose heartbeat stopped. A segment's results are written in
one transaction that first deletes any earlier attempt's rows, so a segment analysed twice (a redelivered
task racing the sweep) leaves exactly the rows of one clean run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import logging
import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import kombu.transport.sqlalchemy
import sqlalchemy.exc
from celery import Celery, signals
from sqlalchemy import and_, delete, exists, func, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.detection import DetectorOptions, FaceDetector, create_detector
from emotion_detector.face_models import FaceModels, create_models
from emotion_detector.model_client import ModelUnavailable
from emotion_detector.pipeline import FaceAnalyzer, FrameAnalysis
from emotion_detector.settings import Settings
from emotion_detector.videos.analysis import Cancelled, analyse_segment
from emotion_detector.videos.db import engine_for, migrate, sessions
from emotion_detector.videos.models import Observation, Person, Segment, Video, still_wanted, utcnow
from emotion_detector.videos.parts import PartRenderer, draw_missing_parts, observation_rows, part_path, parts_dir
from emotion_detector.videos.render import OverlayTimeline, join_parts
from emotion_detector.videos.summary import group_mix, join_tracks, main_people, people_frames, person_stats

log = logging.getLogger(__name__)

celery_app = Celery("emotion_detector")
HEARTBEAT_INTERVAL_S = 0.5  # a segment's progress and cancel check; far below job_stale_after_s
PART_HANDOVER_WAIT_S = 30.0  # finalise waits at most this long for parts other threads are drawing


def configure(settings: Settings) -> None:
    # Redis redelivers an unacknowledged task after this long; kombu's SQLAlchemy transport would pass the
    # option on to create_engine, so it is set for Redis only (the lease sweep covers the embedded queue).
    transport_options = {"visibility_timeout": settings.broker_visibility_timeout_s} if settings.broker_url.startswith("redis") else {}
    if settings.broker_url.startswith("sqla+sqlite:///"):
        Path(settings.broker_url.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if settings.broker_url.startswith("sqla+"):
        # The SQL transport polls its table, by default once a second: a worker sat idle up to a second
        # between two segments (4 s of a 25 s job in bench/video.py). Its transport options all go to
        # create_engine, so the interval is set on the transport class.
        kombu.transport.sqlalchemy.Transport.polling_interval = settings.embedded_queue_poll_s
    celery_app.conf.update(
        broker_url=settings.broker_url,
        task_acks_late=True,  # a task whose worker dies is delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a busy worker does not sit on queued segments others could take
        task_default_queue="videos",
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_ignore_result=True,
    )


configure(Settings())


@signals.worker_init.connect
def _declare_embedded_queue(**_kwargs) -> None:
    """kombu's SQLAlchemy transport creates its queue's row on first use, and two workers starting at once
    race to insert it: the loser dies with "UNIQUE constraint failed: kombu_queue.name". Create the row
    here, before the consumer starts, and take the other worker's row when it won the race."""
    if not celery_app.conf.broker_url.startswith("sqla+"):
        return
    for attempt in range(10):
        try:
            with celery_app.connection_for_write() as connection:
                connection.default_channel.queue_declare(queue=celery_app.conf.task_default_queue)
            return
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):  # row, or table, created meanwhile
            time.sleep(0.05 * (attempt + 1))  # the other worker's row is there now; a new session sees it


@dataclass(frozen=True)
class Database:
    settings: Settings
    sessions: sessionmaker[Session]


@dataclass(frozen=True)
class WorkerContext(Database):
    analyzer: FaceAnalyzer

    @property
    def client(self) -> FaceModels:
        return self.analyzer.client

    @property
    def detector(self) -> FaceDetector:
        return self.analyzer.detector


@functools.cache
def database() -> Database:
    settings = Settings()
    return Database(settings, sessions(settings.database_url))


@functools.cache
def context() -> WorkerContext:
    """Built once per pool process, after the fork (a gRPC channel must never cross a fork)."""
    settings, session_factory = database().settings, database().sessions
    detector = create_detector(DetectorOptions.from_settings(settings))
    client = create_models(settings, timeout_s=max(settings.model_server_timeout_s, 10.0))
    return WorkerContext(settings, session_factory, FaceAnalyzer(detector, client, settings))


@functools.cache
def part_renderer() -> PartRenderer:
    """Created in the pool process on first use (its thread must not cross a fork either)."""
    return PartRenderer(database().sessions, uncertain_below=lambda: context().client.uncertain_below("emotion"))


def plan_segments(frame_count: int, fps: float, segment_seconds: float, overlap: int) -> list[tuple[int, int, int]]:
    """(start, end, overlap_end) per segment; a short remainder joins the last segment."""
    length = max(4 * overlap, round(segment_seconds * fps))
    starts = list(range(0, frame_count, length))
    if len(starts) > 1 and frame_count - starts[-1] < length // 2:
        starts.pop()
    ends = [*starts[1:], frame_count]
    return [(s, e, min(frame_count, e + overlap)) for s, e in zip(starts, ends, strict=True)]


def observations(video_id: str, segment_index: int, end_frame: int, frames: list[FrameAnalysis]) -> list[Observation]:
    """A segment's analysed faces as database rows; the frames from ``end_frame`` on are its overlap with
    the next segment (analysed by both, to join their tracks)."""
    return [
        Observation(
            video_id=video_id,
            segment_index=segment_index,
            frame_index=frame.frame_index,
            local_track=face.track_id,
            in_overlap=frame.frame_index >= end_frame,
            x1=round(face.box_xyxy[0], 2),
            y1=round(face.box_xyxy[1], 2),
            x2=round(face.box_xyxy[2], 2),
            y2=round(face.box_xyxy[3], 2),
            score=round(face.score, 4),
            emotion=[round(float(p), 5) for p in face.emotion_probabilities],
            age_years=round(face.age_years, 2),
            female_probability=round(face.female_probability, 5),
        )
        for frame in frames
        for face in frame.faces
    ]


# ---- tasks -------------------------------------------------------------------------------------------


@celery_app.task(name="videos.start")
def start(video_id: str) -> None:
    ctx = database()
    with ctx.sessions.begin() as session:
        video = session.get(Video, video_id, with_for_update=True)  # a cancel waits for this transaction, or wins
        if video is None or video.status in ("done", "failed"):
            return
        # A conditional update, not an attribute write: a cancel committed since the read must not be undone.
        started = session.execute(
            update(Video)
            .where(Video.id == video_id, Video.status.in_(("queued", "running")), Video.cancel_requested.is_(False))
            .values(status="running", started_at=func.coalesce(Video.started_at, utcnow()), heartbeat_at=utcnow())
        )
        if started.rowcount != 1:
            return
        if not video.segments:
            overlap = ctx.settings.segment_overlap_frames * video.every_n_frames  # counted in analysed frames
            plan = plan_segments(video.frame_count, video.fps, ctx.settings.segment_seconds, overlap)
            video.segments = [Segment(index=i, start_frame=s, end_frame=e, overlap_end_frame=o) for i, (s, e, o) in enumerate(plan)]
        pending = [s.index for s in video.segments if s.status != "done"]
        # The annotated video's parts go here. Made only here, under the job's row lock: a cancel, retry or
        # delete removes it after this, and nothing else makes it again.
        with contextlib.suppress(FileNotFoundError):  # the upload is gone; the analysis will say so
            parts_dir(Path(video.source_path), video.attempts).mkdir(exist_ok=True)
    for index in pending:
        segment.delay(video_id, index)
    if not pending:
        maybe_finalise(video_id)


@celery_app.task(name="videos.segment", bind=True, max_retries=None)
def segment(self, video_id: str, index: int) -> None:
    ctx = context()
    attempt = claim_segment(ctx, video_id, index)
    if attempt is None:
        return  # done already, or another worker holds a live lease on it
    with ctx.sessions() as session:
        video = session.get(Video, video_id)
        seg = session.scalar(select(Segment).where(Segment.video_id == video_id, Segment.index == index))
        if video is None or seg is None:
            return  # deleted since the claim
        # A retry starts the job again with new segment rows whose attempt numbers count from 1 again: the job's
        # own attempt number tells this run's segment from the retry's.
        source, fps, every_n, job_attempt = Path(video.source_path), video.fps, video.every_n_frames, video.attempts
        start_frame, end_frame, overlap_end = seg.start_frame, seg.end_frame, seg.overlap_end_frame
    started = time.perf_counter()
    last_beat = started

    def heartbeat(frames_done: int) -> bool:
        # Called after every batch of frames (~25 a second): a database round trip each time cost more than
        # the analysis gains, and progress and cancel checks twice a second are plenty.
        nonlocal last_beat
        if time.perf_counter() - last_beat < HEARTBEAT_INTERVAL_S:
            return True
        last_beat = time.perf_counter()
        with ctx.sessions.begin() as session:
            if not still_wanted(session.get(Video, video_id), job_attempt):
                return False
            session.execute(
                update(Segment)
                .where(Segment.video_id == video_id, Segment.index == index, Segment.attempts == attempt)
                .values(heartbeat_at=utcnow(), frames_done=min(frames_done, end_frame - start_frame))
            )
            return True

    try:
        found = analyse_segment(ctx.analyzer, source, fps, start_frame, overlap_end, every_n, on_progress=heartbeat)
    except Cancelled:
        log.info("video %s segment %d: cancelled", video_id, index)
        return
    except ModelUnavailable as error:
        release_segment(ctx, video_id, index, attempt)
        log.warning("video %s segment %d: %s; retrying in 5 s", video_id, index, error)
        raise self.retry(countdown=5) from None
    except Exception as error:
        log.exception("video %s segment %d failed", video_id, index)
        fail(ctx, video_id, f"analysis failed at frames {start_frame}-{end_frame}: {error}", job_attempt)
        return
    with ctx.sessions.begin() as session:
        # The definitive check, under the job's row lock (the heartbeat's is skipped within 0.5 s of the last
        # one): a cancel, a delete or a retry since then means these results belong to no one.
        if not still_wanted(session.get(Video, video_id, with_for_update=True), job_attempt):
            log.info("video %s segment %d: the job was cancelled, deleted or restarted; results dropped", video_id, index)
            return
        current = session.scalar(select(Segment).where(Segment.video_id == video_id, Segment.index == index).with_for_update())
        if current is None or current.attempts != attempt or current.status == "done":
            return  # another worker took this segment over; its results stand
        session.execute(delete(Observation).where(Observation.video_id == video_id, Observation.segment_index == index))
        session.add_all(observations(video_id, index, end_frame, found))
        current.status, current.frames_done = "done", end_frame - start_frame
        current.seconds = round(time.perf_counter() - started, 3)
    if ctx.settings.render_parts_while_analysing:
        part_renderer().request(video_id)
    maybe_finalise(video_id)


@celery_app.task(name="videos.finalise", bind=True, max_retries=None)
def finalise(self, video_id: str) -> None:
    ctx = context()
    with ctx.sessions() as session:
        video = session.get(Video, video_id)
        if video is not None and video.status == "done":
            delete_parts(video.source_path)  # a finalisation run again after its commit: only the clean-up was left
        if video is None or video.status != "running" or video.cancel_requested:
            return
        rows = observation_rows(session, video_id)
        segment_seconds = [s.seconds or 0.0 for s in video.segments]
        segment_frames = [(s.index, range(s.start_frame, s.end_frame)) for s in sorted(video.segments, key=lambda s: s.index)]
        fps, frame_count, duration_s, every_n = video.fps, video.frame_count, video.duration_s, video.every_n_frames
        analysed = len(range(0, frame_count, every_n))
        source, started_at, job_attempt = Path(video.source_path), video.started_at, video.attempts
    folder = parts_dir(source, job_attempt)
    persons = join_tracks(rows)
    people = people_frames(rows, persons)
    uncertain_below = ctx.client.uncertain_below("emotion")
    stats = {person: person_stats(frames, fps, analysed, uncertain_below) for person, frames in people.items()}
    main = set(main_people(stats))

    missing = [(index, frames) for index, frames in segment_frames if not part_path(folder, index).exists()]
    beaten_at = 0.0

    def render_heartbeat() -> None:
        nonlocal beaten_at
        if time.monotonic() - beaten_at >= HEARTBEAT_INTERVAL_S:
            fraction = round(sum(part_path(folder, index).exists() for index, _ in segment_frames) / len(segment_frames), 3)
            with ctx.sessions.begin() as session:
                session.execute(update(Video).where(Video.id == video_id).values(heartbeat_at=utcnow(), render_progress=fraction))
            beaten_at = time.monotonic()

    target = source.parent / "annotated.mp4"
    partial = folder / "annotated.mp4"  # gone with the folder if the job is cancelled, retried or deleted meanwhile
    try:
        specs = ctx.client.specs()
        timeline = OverlayTimeline(people, hold_frames=every_n, uncertain_below=uncertain_below)
        with part_renderer().handed_over(video_id):  # this process's thread starts no new part meanwhile
            draw_missing_parts(source, folder, timeline, fps, missing, render_heartbeat, give_up_after_s=PART_HANDOVER_WAIT_S)
        join_parts([(part_path(folder, index), frames.start) for index, frames in segment_frames], partial, fps)
    except ModelUnavailable as error:
        log.warning("video %s: %s; finalising again in 5 s", video_id, error)
        raise self.retry(countdown=5) from None
    except Exception as error:
        if folder.exists():
            log.exception("video %s: finalising failed", video_id)
        else:
            log.info("video %s: its annotated parts are gone: cancelled, retried or deleted meanwhile", video_id)
        fail(ctx, video_id, f"could not write the annotated video: {error}", job_attempt)
        return
    finished = utcnow()
    processing_s = max(1e-3, (finished - started_at).total_seconds())
    summary = {
        "duration_s": duration_s,
        "frames": frame_count,
        "frames_analysed": analysed,
        "every_n_frames": every_n,
        "processing_s": round(processing_s, 3),
        "speed_x_realtime": round(duration_s / processing_s, 3),
        "segments": len(segment_seconds),
        "segment_busy_s": round(sum(segment_seconds), 3),
        "annotated_parts_drawn_while_analysing": f"{len(segment_frames) - len(missing)}/{len(segment_frames)}",
        "detector": ctx.detector.name,
        "models": {name: spec.version for name, spec in specs.items()},
        "emotion_uncertain_below": uncertain_below,
        "main_people": sorted(main),
        "group_mix": group_mix(people, fps, duration_s, uncertain_below=uncertain_below),
    }
    with ctx.sessions.begin() as session:
        video = session.get(Video, video_id, with_for_update=True)
        if not still_wanted(video, job_attempt):
            return  # cancelled, retried or deleted meanwhile: its parts folder went with it
        os.replace(partial, target)  # under the job's row lock, so a cancel or retry cannot come in between
        for (segment_index, local_track), person in persons.items():
            session.execute(
                update(Observation)
                .where(Observation.video_id == video_id, Observation.segment_index == segment_index, Observation.local_track == local_track)
                .values(person=person)
            )
        session.execute(delete(Person).where(Person.video_id == video_id))
        session.add_all(
            Person(
                video_id=video_id, person=p, first_frame=s["first_frame"], last_frame=s["last_frame"], frames_seen=s["frames_seen"], stats=s
            )
            for p, s in stats.items()
        )
        video.summary = summary
        video.annotated_path = str(target)
        video.status, video.finished_at, video.render_progress = "done", finished, 1.0
    shutil.rmtree(folder, ignore_errors=True)
    log.info("video %s done: %d people, %.2fx real time", video_id, len(stats), summary["speed_x_realtime"])


# ---- leases ------------------------------------------------------------------------------------------


def stale_before(ctx: Database) -> dt.datetime:
    return utcnow() - dt.timedelta(seconds=ctx.settings.job_stale_after_s)


def claim_segment(ctx: Database, video_id: str, index: int) -> int | None:
    """Take the segment if nobody holds a live lease on it; returns this attempt's number."""
    with ctx.sessions.begin() as session:
        if session.scalar(select(Video.cancel_requested).where(Video.id == video_id)) in (None, True):
            return None
        claimed = session.execute(
            update(Segment)
            .where(
                Segment.video_id == video_id,
                Segment.index == index,
                or_(Segment.status == "pending", and_(Segment.status == "running", Segment.heartbeat_at < stale_before(ctx))),
            )
            .values(status="running", heartbeat_at=utcnow(), attempts=Segment.attempts + 1, worker=f"{socket.gethostname()}:{os.getpid()}")
        )
        if claimed.rowcount != 1:
            return None
        return session.scalar(select(Segment.attempts).where(Segment.video_id == video_id, Segment.index == index))


def release_segment(ctx: Database, video_id: str, index: int, attempt: int) -> None:
    with ctx.sessions.begin() as session:
        session.execute(
            update(Segment)
            .where(Segment.video_id == video_id, Segment.index == index, Segment.attempts == attempt, Segment.status == "running")
            .values(status="pending")
        )


def maybe_finalise(video_id: str) -> None:
    """Queue the finalisation once, when every segment is done (an atomic flag flip decides who does)."""
    ctx = database()
    with ctx.sessions.begin() as session:
        unfinished = exists().where(Segment.video_id == video_id, Segment.status != "done")
        flipped = session.execute(
            update(Video)
            .where(
                Video.id == video_id,
                Video.status == "running",
                ~unfinished,
                or_(Video.finalising.is_(False), Video.heartbeat_at < stale_before(ctx)),
            )
            .values(finalising=True, heartbeat_at=utcnow())
        )
    if flipped.rowcount == 1:
        finalise.delay(video_id)


def fail(ctx: Database, video_id: str, error: str, job_attempt: int | None = None) -> None:
    """Mark the job failed; with ``job_attempt``, only if it has not been retried since (a retry is a new job)."""
    with ctx.sessions.begin() as session:
        failing = update(Video).where(Video.id == video_id, Video.status.in_(("queued", "running")))
        if job_attempt is not None:
            failing = failing.where(Video.attempts == job_attempt)
        failed = session.execute(
            failing.values(status="failed", error=error, finished_at=utcnow()).returning(Video.source_path)
        ).scalar_one_or_none()
    if failed:
        delete_parts(failed)


def recover(ctx: Database) -> int:
    """Re-queue work whose worker died: stale segment leases, stale finalisations, jobs never started, and
    segments planned but never queued."""
    requeued = 0
    cutoff = stale_before(ctx)
    with ctx.sessions() as session:
        stale_segments = session.execute(
            select(Segment.video_id, Segment.index)
            .join(Video)
            .where(Video.status == "running", Video.cancel_requested.is_(False), Segment.status == "running", Segment.heartbeat_at < cutoff)
        ).all()
        unfinished = exists().where(Segment.video_id == Video.id, Segment.status != "done")
        stuck = session.scalars(
            select(Video.id).where(
                Video.status == "running",
                Video.cancel_requested.is_(False),
                ~unfinished,
                or_(Video.finalising.is_(False), Video.heartbeat_at < cutoff),
            )
        ).all()
        never_started = session.scalars(select(Video.id).where(Video.status == "queued", Video.created_at < cutoff)).all()
        # Segments committed by `start` whose tasks never reached the queue (its worker died in between): no
        # segment of the job is alive and `start` has not queued them for a while, so queue them again. A
        # duplicate task is harmless: it cannot claim a segment that another one holds or finished.
        waiting = exists().where(Segment.video_id == Video.id, Segment.status == "pending")
        alive = exists().where(Segment.video_id == Video.id, Segment.status == "running", Segment.heartbeat_at >= cutoff)
        unqueued = session.scalars(
            select(Video.id).where(
                Video.status == "running", Video.cancel_requested.is_(False), waiting, ~alive, Video.heartbeat_at < cutoff
            )
        ).all()
    for video_id, index in stale_segments:
        log.warning("video %s segment %d: its worker stopped sending heartbeats; queued again", video_id, index)
        segment.delay(video_id, index)
        requeued += 1
    for video_id in stuck:
        maybe_finalise(video_id)
        requeued += 1
    for video_id in [*never_started, *unqueued]:
        start.delay(video_id)  # also queues the pending segments of a running job again
        requeued += 1
    return requeued


@signals.worker_ready.connect
def _start_recovery(**_kwargs) -> None:
    ctx = database()
    migrate(ctx.settings.database_url)

    def sweep() -> None:
        while True:
            try:
                recover(ctx)
            except Exception:
                log.exception("recovery sweep failed")
            time.sleep(max(1.0, ctx.settings.job_stale_after_s / 3))

    threading.Thread(target=sweep, name="recovery-sweep", daemon=True).start()


@signals.worker_process_init.connect
def _fresh_connections_after_fork(**_kwargs) -> None:
    context.cache_clear()
    part_renderer.cache_clear()
    engine_for(database().settings.database_url).dispose(close=False)  # the parent's pooled connections stay its own


def delete_files(source_path: str) -> None:
    shutil.rmtree(Path(source_path).parent, ignore_errors=True)


def delete_parts(source_path: str, keep_attempt: int | None = None) -> None:
    """The annotated video's parts of every attempt but ``keep_attempt`` (a failed, cancelled or retried job
    needs none; the run a retry just queued may have made its own folder already)."""
    for folder in Path(source_path).parent.glob("annotated-parts-*"):
        if keep_attempt is None or folder != parts_dir(Path(source_path), keep_attempt):
            shutil.rmtree(folder, ignore_errors=True)
