"""One lease mechanism for every kind of background work of a video job: a segment's analysis, a part's
render, the finalisation (models.LeasedTask rows).

A worker ``claim``s a task with one conditional UPDATE (pending, or running with a heartbeat older than
``job_stale_after_s``), so exactly one claimant wins; the lease is known by the attempt number the claim
wrote. The holder sends ``heartbeat``s while it works, ``release``s the task when it cannot go on (the
model server is down, it retries later), or ``finish``es it in the transaction that stores its work. Every
write names the lease's attempt, so a holder whose lease was taken over (it stalled, the sweep gave the task
to another worker) writes nothing. ``sweep`` lists what the dead left behind: running tasks whose heartbeat
stopped, and jobs with pending work that nothing alive is doing and nobody queued for a while.

Nothing here knows Celery: jobs.py queues what the sweep finds.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import time
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.settings import Settings
from emotion_detector.videos.db import rowcount
from emotion_detector.videos.models import (
    Finalisation,
    JobState,
    LeasedTask,
    RenderTask,
    Segment,
    TaskState,
    Video,
    still_wanted,
    utcnow,
)

TASK_KINDS: tuple[type[LeasedTask], ...] = (Segment, RenderTask, Finalisation)


@dataclass(frozen=True)
class Database:
    settings: Settings
    sessions: sessionmaker[Session]

    def stale_before(self) -> dt.datetime:
        """A running task whose last heartbeat is older than this is taken to have lost its worker."""
        return utcnow() - dt.timedelta(seconds=self.settings.job_stale_after_s)


@dataclass(frozen=True)
class Lease:
    """A worker's hold on one task of one run of a job."""

    kind: type[LeasedTask]
    video_id: str
    index: int
    attempt: int  # the task's attempt number this lease wrote
    job_attempt: int  # the job's run (a retry is a new run; an older run's work is dropped)

    def row(self) -> ColumnElement[bool]:
        return and_(_row(self.kind, self.video_id, self.index), self.kind.attempts == self.attempt, self.kind.status == TaskState.RUNNING)


def _row(kind: type[LeasedTask], video_id: str, index: int) -> ColumnElement[bool]:
    return and_(kind.video_id == video_id, kind.index == index)


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def claim(db: Database, kind: type[LeasedTask], video_id: str, index: int = 0) -> Lease | None:
    """Take the task if its job is running and nobody holds a live lease on it; None otherwise (done
    already, held by a live worker, or its job cancelled, failed, finished or deleted)."""
    with db.sessions.begin() as session:
        job_attempt = session.scalar(select(Video.attempts).where(Video.id == video_id, Video.status == JobState.RUNNING))
        if job_attempt is None:
            return None
        free = or_(kind.status == TaskState.PENDING, and_(kind.status == TaskState.RUNNING, kind.heartbeat_at < db.stale_before()))
        claimed = session.execute(
            update(kind)
            .where(_row(kind, video_id, index), free)
            .values(status=TaskState.RUNNING, heartbeat_at=utcnow(), attempts=kind.attempts + 1, worker=worker_name())
        )
        if rowcount(claimed) != 1:
            return None
        attempt = session.execute(select(kind.attempts).where(_row(kind, video_id, index))).scalar_one()
    return Lease(kind, video_id, index, attempt, job_attempt)


def heartbeat(db: Database, lease: Lease, **values: object) -> bool:
    """Keep the lease alive (and write ``values`` with it, e.g. progress). False when the work no longer
    belongs to it: the job was cancelled, deleted or retried, or the task was taken over."""
    with db.sessions.begin() as session:
        if not still_wanted(session.get(Video, lease.video_id), lease.job_attempt):
            return False
        return rowcount(session.execute(update(lease.kind).where(lease.row()).values(heartbeat_at=utcnow(), **values))) == 1


class LeaseLost(Exception):
    """The work no longer belongs to the lease: stop, and write nothing."""


class Heartbeat:
    """``heartbeat`` at most every ``interval_s``: callers report progress per frame or batch, and a database
    round trip each time would cost more than the work gains."""

    def __init__(self, db: Database, lease: Lease, interval_s: float) -> None:
        self.db, self.lease, self.interval_s = db, lease, interval_s
        self._beaten_at = time.monotonic()

    def __call__(self, **values: object) -> bool:
        """False when the lease is lost (see ``heartbeat``)."""
        if time.monotonic() - self._beaten_at < self.interval_s:
            return True
        self._beaten_at = time.monotonic()
        return heartbeat(self.db, self.lease, **values)

    def or_stop(self, **values: object) -> None:
        """Raises LeaseLost when the lease is lost."""
        if not self(**values):
            raise LeaseLost


def release(db: Database, lease: Lease) -> None:
    """Give the task back (its worker will retry it later, or another worker takes it)."""
    with db.sessions.begin() as session:
        session.execute(update(lease.kind).where(lease.row()).values(status=TaskState.PENDING))


def finish(session: Session, lease: Lease, **values: object) -> bool:
    """In the transaction that stores the task's work, before storing it: mark the task done if the work
    still belongs to this lease. Takes the job's row lock, so a cancel, retry or delete either comes before
    (False: store nothing) or waits for this transaction."""
    if not still_wanted(session.get(Video, lease.video_id, with_for_update=True), lease.job_attempt):
        return False
    finished = session.execute(update(lease.kind).where(lease.row()).values(status=TaskState.DONE, heartbeat_at=utcnow(), **values))
    return rowcount(finished) == 1


@dataclass(frozen=True)
class Abandoned:
    """What the sweep found: running tasks whose worker stopped sending heartbeats (queue each again), and
    jobs with work pending that no live worker holds and nobody queued for a while (start them again, which
    queues whatever is ready)."""

    tasks: list[tuple[type[LeasedTask], str, int]]
    jobs: list[str]


def sweep(db: Database) -> Abandoned:
    cutoff = db.stale_before()
    running_job = Video.status == JobState.RUNNING
    with db.sessions() as session:
        tasks = [
            (kind, video_id, index)
            for kind in TASK_KINDS
            for video_id, index in session.execute(
                select(kind.video_id, kind.index)
                .join(Video, Video.id == kind.video_id)
                .where(running_job, kind.status == TaskState.RUNNING, kind.heartbeat_at < cutoff)
                .order_by(kind.video_id, kind.index)
            )
        ]
        # Life: a task of the job held or finished lately (between two tasks, nothing is held for a moment).
        lively = [and_(kind.video_id == Video.id, kind.status != TaskState.PENDING, kind.heartbeat_at >= cutoff) for kind in TASK_KINDS]
        alive = or_(*(exists().where(condition) for condition in lively))
        pending = or_(*(exists().where(kind.video_id == Video.id, kind.status == TaskState.PENDING) for kind in TASK_KINDS))
        # A job queued but never started (its start task was lost), or one whose ready tasks were committed
        # but never reached the queue (the worker died in between). A duplicate is harmless: a task held or
        # done cannot be claimed again.
        jobs = session.scalars(
            select(Video.id)
            .where(
                or_(
                    and_(Video.status == JobState.QUEUED, Video.created_at < cutoff),
                    and_(running_job, pending, ~alive, or_(Video.heartbeat_at.is_(None), Video.heartbeat_at < cutoff)),
                )
            )
            .order_by(Video.created_at)
        ).all()
    return Abandoned(tasks, list(jobs))
