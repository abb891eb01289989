"""Database schema of video jobs (SQLAlchemy 2; migrations in emotion_detector/migrations, applied by Alembic)."""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Enum, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    """Naive UTC: compares the same way in SQLite (text) and PostgreSQL (timestamp)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class JobState(StrEnum):
    """A video job's state, as the API reports it (DESIGN.md §2)."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class TaskState(StrEnum):
    """A leased unit of a job's work (a segment's analysis, a part's render, the finalisation; leases.py)."""

    PENDING = "pending"  # not started, or released by a worker that could not go on
    RUNNING = "running"  # leased: its worker sends heartbeats
    DONE = "done"


def state_column(enum: type[StrEnum]) -> Enum:
    # VARCHAR holding the value (no database enum type, no CHECK): the columns were plain strings before.
    return Enum(enum, native_enum=False, create_constraint=False, length=16, values_callable=lambda e: [m.value for m in e])


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dt.datetime: DateTime(timezone=False)}


class Video(Base):
    """One uploaded video and its analysis job."""

    __tablename__ = "videos"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    source_path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[JobState] = mapped_column(state_column(JobState), default=JobState.QUEUED, index=True)
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # a retry is a new attempt: older tasks' work is dropped
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]  # when work was last queued for it (the sweep's "never queued" rule)

    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    fps: Mapped[float] = mapped_column(Float)
    frame_count: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    every_n_frames: Mapped[int] = mapped_column(Integer, default=1)
    # The API key that uploaded it (accounts/keys.py); None when auth is off. No foreign key: keys are revoked,
    # never deleted, and a laptop's videos from before auth was turned on stay visible to no key but the admin.
    owner_id: Mapped[str | None] = mapped_column(String(32), index=True)
    blur_faces: Mapped[bool] = mapped_column(Boolean, default=False)  # pixelated in the annotated video

    # Segments 0 .. segments_joined-1 have their tracks joined into people, and their observations carry the
    # final person ids (a segment's ids never change once it is joined; see TrackJoiner).
    segments_joined: Mapped[int] = mapped_column(Integer, default=0)
    annotated_path: Mapped[str | None] = mapped_column(String(1024))
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)  # a JobSummary (schemas.py)

    segments: Mapped[list[Segment]] = relationship(back_populates="video", cascade="all, delete-orphan", order_by="Segment.index")
    renders: Mapped[list[RenderTask]] = relationship(cascade="all, delete-orphan", order_by="RenderTask.index")
    finalisation: Mapped[Finalisation | None] = relationship(cascade="all, delete-orphan")


def still_wanted(video: Video | None, job_attempt: int) -> bool:
    """Whether a task's work still belongs to the job: not deleted, cancelled, failed or retried."""
    return video is not None and video.status == JobState.RUNNING and video.attempts == job_attempt


class LeasedTask:
    """A unit of a job's background work that one worker at a time holds a lease on (leases.py): the same
    columns, claimed, heart-beaten, released and swept by the same code for every kind of task."""

    if TYPE_CHECKING:
        __tablename__: str  # each kind's own table (the subclasses name it)
    index: Mapped[int] = mapped_column(Integer)
    status: Mapped[TaskState] = mapped_column(state_column(TaskState), default=TaskState.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # leases taken; a lease is known by its number
    heartbeat_at: Mapped[dt.datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)


class Segment(LeasedTask, Base):
    """A stretch of frames analysed by one worker task; [start_frame, end_frame) is its own, and it also
    analyses ``overlap`` frames past end_frame so its tracks can be joined to the next segment's."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("video_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)
    overlap_end_frame: Mapped[int] = mapped_column(Integer)
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    seconds: Mapped[float | None] = mapped_column(Float)
    # The frames (overlap included) where this segment's analysis found a shot cut; None: analysed before
    # cuts were looked for. A cut at a segment's first frame is found by the segment before it.
    shot_cuts: Mapped[list[int] | None] = mapped_column(JSON)

    video: Mapped[Video] = relationship(back_populates="segments")


class RenderTask(LeasedTask, Base):
    """Drawing the annotated video's part for segment ``index`` (its own frames), once the segments up to it
    are joined into people."""

    __tablename__ = "render_tasks"
    __table_args__ = (UniqueConstraint("video_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    seconds: Mapped[float | None] = mapped_column(Float)


class Finalisation(LeasedTask, Base):
    """The job's last step, once every part is drawn: statistics, the parts joined. One per job (index 0)."""

    __tablename__ = "finalisations"
    __table_args__ = (UniqueConstraint("video_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)


class Observation(Base):
    """One face in one analysed frame. ``local_track`` is the segment's tracker id; ``person`` the id after
    tracks are joined across segments (set as soon as it is final: when the segment is joined)."""

    __tablename__ = "observations"
    __table_args__ = (
        UniqueConstraint("video_id", "segment_index", "frame_index", "local_track"),
        Index("ix_observations_video_frame", "video_id", "frame_index"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"))
    segment_index: Mapped[int] = mapped_column(Integer)
    frame_index: Mapped[int] = mapped_column(Integer)
    local_track: Mapped[int] = mapped_column(Integer)
    in_overlap: Mapped[bool] = mapped_column(Boolean, default=False)  # past the segment's own end
    person: Mapped[int | None] = mapped_column(Integer)
    x1: Mapped[float] = mapped_column(Float)
    y1: Mapped[float] = mapped_column(Float)
    x2: Mapped[float] = mapped_column(Float)
    y2: Mapped[float] = mapped_column(Float)
    score: Mapped[float] = mapped_column(Float)
    emotion: Mapped[list[float]] = mapped_column(JSON)  # 7 probabilities, EMOTIONS order, smoothed per track
    emotion_raw: Mapped[list[float] | None] = mapped_column(JSON)  # the same before smoothing (None: older rows)
    age_years: Mapped[float] = mapped_column(Float)
    female_probability: Mapped[float] = mapped_column(Float)

    @property
    def box_xyxy(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


class Person(Base):
    """A joined track's summary statistics (written when the job finishes)."""

    __tablename__ = "people"
    __table_args__ = (UniqueConstraint("video_id", "person"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    person: Mapped[int] = mapped_column(Integer)
    first_frame: Mapped[int] = mapped_column(Integer)
    last_frame: Mapped[int] = mapped_column(Integer)
    frames_seen: Mapped[int] = mapped_column(Integer)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON)
