"""The annotated video's parts, drawn in the background of a worker process while it analyses the next
segment: with one worker the render no longer waits for the whole analysis, and the two share the cores
(PyAV and OpenCV let go of the GIL while they decode, draw and encode).

A part is a file per job attempt and segment, written under a temporary name and renamed when complete, so
a part either exists whole or not at all. It can be drawn once the segments up to it are analysed, because
a segment's person ids never change when later segments are joined (TrackJoiner). ``finalise`` draws any part
still missing (a worker died, or another worker's segment finished last), waits for those another thread is
drawing (PartClaim), and joins them."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.videos.models import Observation, Video
from emotion_detector.videos.render import OverlayTimeline, render_part
from emotion_detector.videos.summary import Row, TrackJoiner, people_frames

log = logging.getLogger(__name__)
BACKGROUND_NICENESS = 10


def parts_dir(source_path: Path, job_attempt: int) -> Path:
    """One folder per attempt: a retried job never mixes in the parts of the run before it."""
    return source_path.parent / f"annotated-parts-{job_attempt}"


def part_path(folder: Path, segment_index: int) -> Path:
    return folder / f"{segment_index:05d}.mp4"


def unique_scratch_path(path: Path) -> Path:
    """Where to write ``path`` before renaming it into place: unique, as workers on several machines (or
    with the same process id in their own containers) may draw the same part at once."""
    return path.with_name(f"{path.stem}.{uuid.uuid4().hex}.part")


def observation_rows(session: Session, video_id: str, segment_index: int | None = None) -> list[Row]:
    """The stored observations of a video (or of one of its segments) in segment and frame order."""
    query = select(Observation).where(Observation.video_id == video_id)
    if segment_index is not None:
        query = query.where(Observation.segment_index == segment_index)
    return [
        Row(
            o.segment_index,
            o.frame_index,
            o.local_track,
            o.in_overlap,
            (o.x1, o.y1, o.x2, o.y2),
            o.score,
            tuple(o.emotion),
            o.age_years,
            o.female_probability,
        )
        for o in session.scalars(query.order_by(Observation.segment_index, Observation.frame_index))
    ]


@dataclass
class _Progress:
    """What this process knows of one job attempt: the joined ids so far and the rows a next part may need."""

    attempt: int
    joiner: TrackJoiner = field(default_factory=TrackJoiner)
    recent_rows: dict[int, list[Row]] = field(default_factory=dict)  # segment → its rows


@dataclass(frozen=True)
class _Segment:
    index: int
    start: int
    end: int
    done: bool


class PartClaim:
    """A marker file beside a part while someone draws it, so that the background threads of several
    workers, and finalise, do not draw the same part at once. Only an optimisation: a part drawn twice is
    still correct (each is written under a unique name and renamed), so a claim left by a dead worker just
    stops counting once it is ``stale_after_s`` old (its drawer refreshes it as it goes)."""

    def __init__(self, part: Path, stale_after_s: float = 10.0) -> None:
        self.path = part.with_name(part.name + ".claim")
        self._stale_after_s = stale_after_s

    def take(self) -> bool:
        """Claim the part; False if someone else holds a fresh claim. Raises FileNotFoundError if the
        parts folder is gone (the job was cancelled, retried, deleted or finished)."""
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return True
        except FileExistsError:
            if self.is_held():
                return False
            self.refresh()  # a stale claim: taken over
            return True

    def is_held(self) -> bool:
        try:
            return time.time() - self.path.stat().st_mtime < self._stale_after_s
        except FileNotFoundError:
            return False

    def refresh(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path)

    def drop(self) -> None:
        self.path.unlink(missing_ok=True)


def draw_claimed_part(
    source: Path,
    part: Path,
    timeline: OverlayTimeline,
    fps: float,
    frames: range,
    claim: PartClaim,
    on_frame: Callable[[int], None] | None = None,
) -> bool:
    """Draw a part whose claim the caller holds, refreshing the claim as it goes, and let the claim go.
    False if the part was there already (drawn by someone else between the caller's check and its claim)."""

    def progress(frame_index: int) -> None:
        if frame_index % 25 == 0:
            claim.refresh()
        if on_frame is not None:
            on_frame(frame_index)

    scratch = unique_scratch_path(part)
    try:
        if part.exists():
            return False
        render_part(source, scratch, timeline, fps, frames, on_frame=progress)
        os.replace(scratch, part)
        return True
    finally:
        scratch.unlink(missing_ok=True)
        claim.drop()


class PartRenderer:
    """One background thread per worker process; ``request(video)`` after a segment is stored,
    ``hand_over(video)`` before finalising it in the same process (the thread finishes the part in hand, whose
    claim tells finalise to wait for it, and starts no other)."""

    def __init__(self, sessions: sessionmaker[Session], keep_jobs: int = 4) -> None:
        self._sessions = sessions
        self._keep_jobs = keep_jobs
        self._queue: queue.Queue[str] = queue.Queue()
        self._progress: dict[str, _Progress] = {}
        self._handed_over: set[str] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def request(self, video_id: str) -> None:
        """Draw, in the background, every part of the video that can be drawn now and is not there yet."""
        with self._lock:
            self._handed_over.discard(video_id)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="annotated-parts", daemon=True)
                self._thread.start()
        self._queue.put(video_id)

    def hand_over(self, video_id: str) -> None:
        """Start no new part of this video: finalise draws the rest."""
        with self._lock:
            self._handed_over.add(video_id)

    def _run(self) -> None:
        # Below the analysis in priority (Linux: per thread, inherited by the encoder's threads): the parts
        # take the CPU time the analysis leaves, not time from it.
        with contextlib.suppress(AttributeError, OSError):  # Linux only: elsewhere niceness is per process
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), BACKGROUND_NICENESS)
        while True:
            video_id = self._queue.get()
            try:
                self._draw_ready_parts(video_id)
            except Exception:  # finalise draws whatever is missing; the worker goes on
                log.exception("video %s: drawing annotated parts in the background failed", video_id)
                self._progress.pop(video_id, None)

    def _draw_ready_parts(self, video_id: str) -> None:
        with self._sessions() as session:
            video = session.get(Video, video_id)
            if video is None or video.status != "running" or video.cancel_requested:
                return
            segments = [
                _Segment(s.index, s.start_frame, s.end_frame, s.status == "done") for s in sorted(video.segments, key=lambda s: s.index)
            ]
            source, fps, hold_frames, attempt = Path(video.source_path), video.fps, video.every_n_frames, video.attempts
        folder = parts_dir(source, attempt)
        progress = self._progress.get(video_id)
        if progress is None or progress.attempt != attempt:
            progress = self._progress[video_id] = _Progress(attempt)
            while len(self._progress) > self._keep_jobs:
                self._progress.pop(next(iter(self._progress)))
        lookback = OverlayTimeline.lookback_frames(hold_frames)
        for segment in segments:
            if not segment.done:
                return  # later parts need this segment's ids
            with self._lock:
                if video_id in self._handed_over:
                    return
            while progress.joiner.segments_added <= segment.index:
                with self._sessions() as session:
                    rows = observation_rows(session, video_id, progress.joiner.segments_added)
                progress.joiner.add_segment(progress.joiner.segments_added, rows)
                progress.recent_rows[progress.joiner.segments_added - 1] = rows
            earliest = segment.start - lookback
            for index in [i for i, rows in progress.recent_rows.items() if not rows or rows[-1].frame_index < earliest]:
                del progress.recent_rows[index]  # no part from here on draws these rows
            target = part_path(folder, segment.index)
            if target.exists():
                continue
            # The rows this part draws, and those just before it that its first labels are smoothed over.
            nearby = [
                row
                for index in sorted(progress.recent_rows)
                for row in progress.recent_rows[index]
                if earliest <= row.frame_index < segment.end
            ]
            timeline = OverlayTimeline(people_frames(nearby, progress.joiner.persons), hold_frames)
            try:
                claim = PartClaim(target)
                if claim.take():  # else another worker draws it
                    draw_claimed_part(source, target, timeline, fps, range(segment.start, segment.end), claim)
            except FileNotFoundError:
                return  # the job was cancelled, retried, deleted or finished meanwhile: its folder is gone
