"""Database schema of video jobs (SQLAlchemy 2; migrations in emotion_detector/migrations, applied by Alembic)."""

from __future__ import annotations

import datetime as dt
from typing import ClassVar

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> dt.datetime:
    """Naive UTC: compares the same way in SQLite (text) and PostgreSQL (timestamp)."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar = {dt.datetime: DateTime(timezone=False)}


class Video(Base):
    """One uploaded video and its analysis job. status: queued | running | done | failed (DESIGN.md §2)."""

    __tablename__ = "videos"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    filename: Mapped[str] = mapped_column(String(255))
    source_path: Mapped[str] = mapped_column(String(1024))
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    heartbeat_at: Mapped[dt.datetime | None]  # finalising: set while the last stage runs

    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    fps: Mapped[float] = mapped_column(Float)
    frame_count: Mapped[int] = mapped_column(Integer)
    duration_s: Mapped[float] = mapped_column(Float)
    every_n_frames: Mapped[int] = mapped_column(Integer, default=1)

    finalising: Mapped[bool] = mapped_column(Boolean, default=False)
    render_progress: Mapped[float] = mapped_column(Float, default=0.0)
    annotated_path: Mapped[str | None] = mapped_column(String(1024))
    summary: Mapped[dict | None] = mapped_column(JSON)

    segments: Mapped[list[Segment]] = relationship(back_populates="video", cascade="all, delete-orphan", order_by="Segment.index")


def still_wanted(video: Video | None, job_attempt: int) -> bool:
    """Whether a task's work still belongs to the job: not deleted, cancelled, failed or retried."""
    return video is not None and video.status == "running" and not video.cancel_requested and video.attempts == job_attempt


class Segment(Base):
    """A stretch of frames analysed by one worker task; [start_frame, end_frame) is its own, and it also
    analyses ``overlap`` frames past end_frame so its tracks can be joined to the next segment's."""

    __tablename__ = "segments"
    __table_args__ = (UniqueConstraint("video_id", "index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    video_id: Mapped[str] = mapped_column(ForeignKey("videos.id", ondelete="CASCADE"), index=True)
    index: Mapped[int] = mapped_column(Integer)
    start_frame: Mapped[int] = mapped_column(Integer)
    end_frame: Mapped[int] = mapped_column(Integer)
    overlap_end_frame: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="pending")  # pending | running | done
    frames_done: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    heartbeat_at: Mapped[dt.datetime | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    seconds: Mapped[float | None] = mapped_column(Float)

    video: Mapped[Video] = relationship(back_populates="segments")


class Observation(Base):
    """One face in one analysed frame. ``local_track`` is the segment's tracker id; ``person`` the id after
    tracks are joined across segments (set when the job finishes)."""

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
    emotion: Mapped[list[float]] = mapped_column(JSON)  # 7 probabilities, EMOTIONS order
    age_years: Mapped[float] = mapped_column(Float)
    female_probability: Mapped[float] = mapped_column(Float)


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
    stats: Mapped[dict] = mapped_column(JSON)
