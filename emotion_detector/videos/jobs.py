"""Video jobs on Celery workers:  celery -A emotion_detector.videos.jobs worker

    videos.start(id)            plan the segments, their render tasks and the finalisation; queue what is ready
    videos.segment(id, index)   analyse one segment and store its observations; join the segments now joinable
                                into people (their person ids are final then) and queue their render tasks
    videos.render(id, index)    draw the annotated video's part of a joined segment (a lower-priority queue)
    videos.finalise(id)         once every part is drawn: statistics, the parts joined, status done

Every task is a leased row (leases.py): claimed atomically, kept alive with heartbeats, swept and queued
again by any worker when its worker dies. Tasks are acknowledged only after they ran (``acks_late``). A
task's results are written in the transaction that marks it done, under the job's row lock, and only while
its lease and its run of the job hold, so work done twice (a redelivered task racing the sweep) or for a run
that was cancelled, retried or deleted meanwhile leaves exactly the rows of one clean run.

Workers consume both queues, segments first: the analysis, which the statistics and every later part wait
for, is never held up by drawing (Redis: ``queue_order_strategy=priority``; the embedded SQL queue: its
queues are polled in order, see ``_InOrderCycle``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from queue import Empty

import kombu.transport.sqlalchemy
import kombu.transport.virtual
import sqlalchemy.exc
from celery import Celery, Task, signals
from kombu.entity import Queue
from kombu.utils.scheduling import FairCycle
from sqlalchemy import delete, exists, func, select, update
from sqlalchemy.orm import Session

from emotion_detector import metrics
from emotion_detector.detection import DetectorOptions, FaceDetector, create_detector
from emotion_detector.face_models import FaceModels, create_models
from emotion_detector.model_client import ModelUnavailable
from emotion_detector.pipeline import FaceAnalyzer, FrameAnalysis
from emotion_detector.settings import Settings
from emotion_detector.videos import leases, steps
from emotion_detector.videos.analysis import Cancelled, analyse_segment
from emotion_detector.videos.db import engine_for, migrate, rowcount, sessions
from emotion_detector.videos.finalise import Models
from emotion_detector.videos.finalise import finalise as finalise_job
from emotion_detector.videos.leases import Database
from emotion_detector.videos.models import (
    Finalisation,
    JobState,
    LeasedTask,
    Observation,
    RenderTask,
    Segment,
    TaskState,
    Video,
    utcnow,
)
from emotion_detector.videos.render import parts_dir

log = logging.getLogger(__name__)

celery_app = Celery("emotion_detector")
SEGMENT_QUEUE = "videos"
RENDER_QUEUE = "videos-render"  # consumed after SEGMENT_QUEUE
HEARTBEAT_INTERVAL_S = 0.5  # a task's progress and cancel check; far below job_stale_after_s
HOUSEKEEPING_INTERVAL_S = 600.0  # retention and dead uploads: minutes late is soon enough


class _InOrderCycle(FairCycle):
    """kombu's virtual transports poll their queues in turn; this polls them in the order the worker
    consumes them, from the first each time, so a segment waiting is always taken before a render."""

    def get(self, callback: Callable[..., object], **kwargs: object) -> object:
        self.pos = 0
        return super().get(callback, **kwargs)  # type: ignore[no-untyped-call]  # unannotated in kombu


def _poll_queues_in_order(channel: kombu.transport.virtual.Channel) -> None:
    channel._cycle = _InOrderCycle(channel._get_and_deliver, channel._active_queues, Empty)  # type: ignore[no-untyped-call]  # unannotated in kombu


def configure(settings: Settings) -> None:
    # Redis redelivers an unacknowledged task after this long; kombu's SQLAlchemy transport would pass the
    # options on to create_engine, so they are set for Redis only (the lease sweep covers the embedded queue).
    transport_options = (
        {"visibility_timeout": settings.broker_visibility_timeout_s, "queue_order_strategy": "priority"}
        if settings.broker_url.startswith("redis")
        else {}
    )
    if settings.broker_url.startswith("sqla+sqlite:///"):
        Path(settings.broker_url.removeprefix("sqla+sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    if settings.broker_url.startswith("sqla+"):
        # The SQL transport polls its table, by default once a second: a worker sat idle up to a second
        # between two segments (4 s of a 25 s job in bench/video.py). Its transport options all go to
        # create_engine, so the interval, and the queue order, are set on the transport's classes.
        kombu.transport.sqlalchemy.Transport.polling_interval = settings.embedded_queue_poll_s
        kombu.transport.sqlalchemy.Channel._reset_cycle = _poll_queues_in_order  # type: ignore[method-assign]  # patched on purpose
    celery_app.conf.update(
        broker_url=settings.broker_url,
        task_acks_late=True,  # a task whose worker dies is delivered again
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a busy worker does not sit on queued tasks others could take
        # A worker consumes both, in this order.
        task_queues=(Queue(SEGMENT_QUEUE), Queue(RENDER_QUEUE)),  # type: ignore[no-untyped-call]  # unannotated in kombu
        task_default_queue=SEGMENT_QUEUE,
        task_routes={"videos.render": {"queue": RENDER_QUEUE}},
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        task_ignore_result=True,
    )


configure(Settings())


def check_queue(timeout_s: float = 2.0) -> None:
    """Raise when the job queue cannot be reached (for the health check): one connection, no retries."""
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=0, timeout=timeout_s)
        connection.default_channel  # noqa: B018  # opening a channel talks to the broker (Redis: a PING)


@signals.worker_init.connect  # type: ignore[untyped-decorator]  # Celery has no type information
def _declare_embedded_queues(**_kwargs: object) -> None:
    """kombu's SQLAlchemy transport creates a queue's row on first use, and two workers starting at once
    race to insert it: the loser dies with "UNIQUE constraint failed: kombu_queue.name". Create the rows
    here, before the consumer starts, and take the other worker's row when it won the race."""
    if not celery_app.conf.broker_url.startswith("sqla+"):
        return
    for queue in (SEGMENT_QUEUE, RENDER_QUEUE):
        for attempt in range(10):
            try:
                with celery_app.connection_for_write() as connection:
                    connection.default_channel.queue_declare(queue=queue)
                break
            except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.OperationalError):  # row, or table, created meanwhile
                time.sleep(0.05 * (attempt + 1))  # the other worker's row is there now; a new session sees it


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


def plan_segments(frame_count: int, fps: float, segment_seconds: float, overlap: int) -> list[tuple[int, int, int]]:
    """(start, end, overlap_end) per segment; a short remainder joins the last segment."""
    length = max(4 * overlap, round(segment_seconds * fps))
    starts = list(range(0, frame_count, length))
    if len(starts) > 1 and frame_count - starts[-1] < length // 2:
        starts.pop()
    ends = [*starts[1:], frame_count]
    return [(s, e, min(frame_count, e + overlap)) for s, e in zip(starts, ends, strict=True)]


# ---- tasks -------------------------------------------------------------------------------------------


@celery_app.task(name="videos.start")  # type: ignore[untyped-decorator]  # Celery has no type information
def start(video_id: str) -> None:
    """Start a queued job, or queue again what a running one has pending (the sweep calls it for jobs whose
    queued work was lost)."""
    db = database()
    with db.sessions.begin() as session:
        video = session.get(Video, video_id, with_for_update=True)  # a cancel waits for this transaction, or wins
        if video is None or video.status not in (JobState.QUEUED, JobState.RUNNING):
            return
        # A conditional update, not an attribute write: a cancel committed since the read must not be undone.
        started = session.execute(
            update(Video)
            .where(Video.id == video_id, Video.status.in_((JobState.QUEUED, JobState.RUNNING)))
            .values(status=JobState.RUNNING, started_at=func.coalesce(Video.started_at, utcnow()), heartbeat_at=utcnow())
        )
        if rowcount(started) != 1:
            return
        if not video.segments:
            overlap = db.settings.segment_overlap_frames * video.every_n_frames  # counted in analysed frames
            plan = plan_segments(video.frame_count, video.fps, db.settings.segment_seconds, overlap)
            video.segments = [Segment(index=i, start_frame=s, end_frame=e, overlap_end_frame=o) for i, (s, e, o) in enumerate(plan)]
        if not video.renders:
            video.renders = [RenderTask(index=s.index) for s in video.segments]
        if video.finalisation is None:
            video.finalisation = Finalisation(index=0)
        pending = [s.index for s in video.segments if s.status != TaskState.DONE]
        drawable = [r.index for r in video.renders if r.status != TaskState.DONE and r.index < video.segments_joined]
        # The annotated video's parts go here. Made only here, under the job's row lock: a cancel, retry or
        # delete removes it after this, and nothing else makes it again.
        with contextlib.suppress(FileNotFoundError):  # the upload is gone; the analysis will say so
            parts_dir(Path(video.source_path), video.attempts).mkdir(exist_ok=True)
    for index in pending:
        segment.delay(video_id, index)
    for index in drawable:
        render.delay(video_id, index)
    advance(video_id)


@celery_app.task(name="videos.segment", bind=True, max_retries=None)  # type: ignore[untyped-decorator]  # Celery has no type information
def segment(self: Task, video_id: str, index: int) -> None:
    ctx = context()
    lease = leases.claim(ctx, Segment, video_id, index)
    if lease is None:
        return  # done already, another worker holds a live lease on it, or the job is no longer running
    with ctx.sessions() as session:
        video = session.get(Video, video_id)
        seg = session.scalar(select(Segment).where(Segment.video_id == video_id, Segment.index == index))
        if video is None or seg is None:
            return  # deleted since the claim
        source, fps, every_n = Path(video.source_path), video.fps, video.every_n_frames
        start_frame, end_frame, overlap_end = seg.start_frame, seg.end_frame, seg.overlap_end_frame
    started = time.perf_counter()
    beat = leases.Heartbeat(ctx, lease, HEARTBEAT_INTERVAL_S)

    def heartbeat(frames_done: int) -> bool:  # False: the analyser stops (Cancelled)
        return beat(frames_done=min(frames_done, end_frame - start_frame))

    try:
        found = analyse_segment(ctx.analyzer, source, fps, start_frame, overlap_end, every_n, on_progress=heartbeat)
    except Cancelled:
        log.info("video %s segment %d: cancelled, retried, deleted or taken over", video_id, index)
        return
    except ModelUnavailable as error:
        leases.release(ctx, lease)
        log.warning("video %s segment %d: %s; retrying in 5 s", video_id, index, error)
        raise self.retry(countdown=5) from None
    except Exception as error:
        log.exception("video %s segment %d failed", video_id, index)
        metrics.worker().failures.labels("segment").inc()
        fail(ctx, video_id, f"analysis failed at frames {start_frame}-{end_frame}: {error}", lease.job_attempt)
        return
    with ctx.sessions.begin() as session:
        seconds = round(time.perf_counter() - started, 3)
        if not leases.finish(session, lease, frames_done=end_frame - start_frame, seconds=seconds):
            log.info("video %s segment %d: the job was cancelled, deleted or retried, or the segment taken over; dropped", video_id, index)
            return
        store_segment(session, video_id, index, end_frame, found)
    counted = metrics.worker()
    counted.frames_processed.inc(end_frame - start_frame)
    counted.task_duration.labels("segment").observe(seconds)
    advance(video_id)


def store_segment(session: Session, video_id: str, index: int, end_frame: int, found: list[FrameAnalysis]) -> None:
    """A segment's analysed faces as rows, replacing any earlier attempt's (their person ids come when the
    segment is joined); the frames from ``end_frame`` on are its overlap with the next segment (analysed by
    both, to join their tracks). The shot cuts it found are stored with the segment."""
    session.execute(delete(Observation).where(Observation.video_id == video_id, Observation.segment_index == index))
    cuts = [frame.video_frame_index for frame in found if frame.shot_cut]
    session.execute(update(Segment).where(Segment.video_id == video_id, Segment.index == index).values(shot_cuts=cuts))
    session.add_all(
        Observation(
            video_id=video_id,
            segment_index=index,
            frame_index=frame.video_frame_index,
            local_track=face.track_id,
            in_overlap=frame.video_frame_index >= end_frame,
            x1=round(face.box_xyxy[0], 2),
            y1=round(face.box_xyxy[1], 2),
            x2=round(face.box_xyxy[2], 2),
            y2=round(face.box_xyxy[3], 2),
            score=round(face.score, 4),
            emotion=[round(float(p), 5) for p in face.emotion_probabilities],
            emotion_raw=[round(float(p), 5) for p in face.emotion_raw_probabilities],
            age_years=round(face.age_years, 2),
            female_probability=round(face.female_probability, 5),
        )
        for frame in found
        for face in frame.faces
    )


@celery_app.task(name="videos.render", bind=True, max_retries=None)  # type: ignore[untyped-decorator]  # Celery has no type information
def render(self: Task, video_id: str, index: int) -> None:
    ctx = context()
    lease = leases.claim(ctx, RenderTask, video_id, index)
    if lease is None:
        return
    started = time.perf_counter()
    beat = leases.Heartbeat(ctx, lease, HEARTBEAT_INTERVAL_S)
    plan = None
    try:
        plan = steps.plan_part(ctx, lease, ctx.client.uncertain_below("emotion"))
        if plan is None:
            return  # deleted since the claim
        steps.draw_part(plan, on_frame=lambda _frame_index: beat.or_stop())
    except leases.LeaseLost:
        log.info("video %s part %d: cancelled, retried, deleted or taken over", video_id, index)
        return
    except ModelUnavailable as error:
        leases.release(ctx, lease)
        log.warning("video %s part %d: %s; retrying in 5 s", video_id, index, error)
        raise self.retry(countdown=5) from None
    except Exception as error:
        if isinstance(error, FileNotFoundError) and plan is not None and not plan.target.parent.exists():
            log.info("video %s part %d: its parts folder is gone: cancelled, retried or deleted meanwhile", video_id, index)
            return
        log.exception("video %s part %d failed", video_id, index)
        metrics.worker().failures.labels("render").inc()
        fail(ctx, video_id, f"could not draw the annotated video: {error}", lease.job_attempt)
        return
    with ctx.sessions.begin() as session:
        if not leases.finish(session, lease, seconds=round(time.perf_counter() - started, 3)):
            return
    metrics.worker().task_duration.labels("render").observe(time.perf_counter() - started)
    advance(video_id)


@celery_app.task(name="videos.finalise", bind=True, max_retries=None)  # type: ignore[untyped-decorator]  # Celery has no type information
def finalise(self: Task, video_id: str) -> None:
    ctx = context()
    lease = leases.claim(ctx, Finalisation, video_id)
    if lease is None:
        with ctx.sessions() as session:
            video = session.get(Video, video_id)
            if video is not None and video.status == JobState.DONE:
                delete_parts(video.source_path)  # run again after its commit: only the clean-up was left
        return
    if not _all_parts_drawn(ctx, video_id):  # a stray delivery: advance queues it again when they are
        leases.release(ctx, lease)
        return
    started = time.perf_counter()
    try:
        versions: dict[str, int | str] = {name: spec.version for name, spec in ctx.client.specs().items()}
        models = Models(ctx.detector.name, versions, ctx.client.uncertain_below("emotion"), ctx.analyzer.search.min_face_px_for)
        summary = finalise_job(ctx, lease, models)
    except ModelUnavailable as error:
        leases.release(ctx, lease)
        log.warning("video %s: %s; finalising again in 5 s", video_id, error)
        raise self.retry(countdown=5) from None
    except Exception as error:
        log.exception("video %s: finalising failed", video_id)
        metrics.worker().failures.labels("finalise").inc()
        fail(ctx, video_id, f"could not write the annotated video: {error}", lease.job_attempt)
        return
    if summary is None:
        log.info("video %s: cancelled, retried or deleted while finalising", video_id)
    else:
        counted = metrics.worker()
        counted.videos_processed.inc()
        counted.task_duration.labels("finalise").observe(time.perf_counter() - started)
        log.info("video %s done: %d main people, %.2fx real time", video_id, len(summary.main_people), summary.speed_x_realtime)


# ---- moving a job on ---------------------------------------------------------------------------------


def advance(video_id: str) -> None:
    """After a task's work is stored: join the segments that can now be joined and queue their parts, and
    queue the finalisation once every part is drawn. Each part is queued once, when its segment is joined
    (``start`` queues again those whose queue messages were lost)."""
    db = database()
    joined = steps.join_ready_segments(db, video_id)
    for index in joined:
        render.delay(video_id, index)
    ready = _all_parts_drawn(db, video_id)
    if ready:
        finalise.delay(video_id)  # a duplicate is harmless: one claims the lease
    if joined or ready:
        with db.sessions.begin() as session:  # the sweep's "queued a while ago" clock
            session.execute(update(Video).where(Video.id == video_id).values(heartbeat_at=utcnow()))


def _all_parts_drawn(db: Database, video_id: str) -> bool:
    """Whether the job runs, has its render tasks, all done, and its finalisation is still to do."""
    with db.sessions() as session:
        undrawn = exists().where(RenderTask.video_id == Video.id, RenderTask.status != TaskState.DONE)
        planned = exists().where(RenderTask.video_id == Video.id)
        to_finalise = exists().where(Finalisation.video_id == Video.id, Finalisation.status != TaskState.DONE)
        query = select(Video.id).where(Video.id == video_id, Video.status == JobState.RUNNING, planned, ~undrawn, to_finalise)
        return session.scalar(query) is not None


def fail(db: Database, video_id: str, error: str, job_attempt: int | None = None) -> None:
    """Mark the job failed; with ``job_attempt``, only if it has not been retried since (a retry is a new job)."""
    with db.sessions.begin() as session:
        failing = update(Video).where(Video.id == video_id, Video.status.in_((JobState.QUEUED, JobState.RUNNING)))
        if job_attempt is not None:
            failing = failing.where(Video.attempts == job_attempt)
        failed = session.execute(
            failing.values(status=JobState.FAILED, error=error, finished_at=utcnow()).returning(Video.source_path)
        ).scalar_one_or_none()
    if failed:
        delete_parts(failed)


# ---- recovery ----------------------------------------------------------------------------------------


def _requeue(kind: type[LeasedTask], video_id: str, index: int) -> None:
    if kind is Segment:
        segment.delay(video_id, index)
    elif kind is RenderTask:
        render.delay(video_id, index)
    else:
        finalise.delay(video_id)


def recover(db: Database) -> int:
    """Queue again the work whose worker died (see leases.sweep); returns how many tasks were queued."""
    abandoned = leases.sweep(db)
    for kind, video_id, index in abandoned.tasks:
        log.warning("video %s %s %d: its worker stopped sending heartbeats; queued again", video_id, kind.__tablename__, index)
        _requeue(kind, video_id, index)
    for video_id in abandoned.jobs:
        start.delay(video_id)  # queues the job's pending work again
    return len(abandoned.tasks) + len(abandoned.jobs)


def _housekeeping(db: Database) -> None:
    """Retention and dead uploads (housekeeping.py imports the service, which imports this module)."""
    from emotion_detector.videos.housekeeping import sweep_expired_videos, sweep_partial_uploads

    sweep_expired_videos(db.sessions, db.settings.video_retention_days)
    sweep_partial_uploads(db.settings.storage_dir, db.settings.upload_stale_after_s)


@signals.worker_ready.connect  # type: ignore[untyped-decorator]  # Celery has no type information
def _start_recovery(**_kwargs: object) -> None:
    db = database()
    migrate(db.settings.database_url)

    def sweep() -> None:
        housekeeping_due_s = 0.0
        while True:
            try:
                recover(db)
                if time.monotonic() >= housekeeping_due_s:
                    _housekeeping(db)
                    housekeeping_due_s = time.monotonic() + HOUSEKEEPING_INTERVAL_S
            except Exception:
                log.exception("recovery sweep failed")
            time.sleep(max(1.0, db.settings.job_stale_after_s / 3))

    threading.Thread(target=sweep, name="recovery-sweep", daemon=True).start()


_metrics_dir_made: list[Path] = []  # a temporary metrics directory this worker made, removed at shutdown


@signals.worker_init.connect  # type: ignore[untyped-decorator]  # Celery has no type information
def _serve_metrics(**_kwargs: object) -> None:
    """With EMOTION_WORKER_METRICS_PORT set, the worker's main process serves Prometheus metrics there, added
    up over its pool processes: they count into PROMETHEUS_MULTIPROC_DIR (else a fresh temporary
    directory), set here, before the pool forks and before any of them counts."""
    settings = database().settings
    if settings.worker_metrics_port is None:
        return
    path, made = metrics.use_multiprocess_dir(prefix="emotion-detector-worker-metrics-")
    if made:
        _metrics_dir_made.append(path)
    metrics.serve(settings.worker_metrics_host, settings.worker_metrics_port)
    log.info("metrics on http://%s:%d/metrics", settings.worker_metrics_host, settings.worker_metrics_port)


@signals.worker_shutdown.connect  # type: ignore[untyped-decorator]  # Celery has no type information
def _remove_metrics_dir(**_kwargs: object) -> None:
    for path in _metrics_dir_made:
        shutil.rmtree(path, ignore_errors=True)


@signals.worker_process_init.connect  # type: ignore[untyped-decorator]  # Celery has no type information
def _fresh_connections_after_fork(**_kwargs: object) -> None:
    context.cache_clear()
    engine_for(database().settings.database_url).dispose(close=False)  # the parent's pooled connections stay its own


def delete_files(source_path: str) -> None:
    shutil.rmtree(Path(source_path).parent, ignore_errors=True)


def delete_parts(source_path: str, keep_attempt: int | None = None) -> None:
    """The annotated video's parts of every run but ``keep_attempt`` (a failed, cancelled or retried job
    needs none; the run a retry just queued may have made its own folder already)."""
    for folder in Path(source_path).parent.glob("annotated-parts-*"):
        if keep_attempt is None or folder != parts_dir(Path(source_path), keep_attempt):
            shutil.rmtree(folder, ignore_errors=True)
