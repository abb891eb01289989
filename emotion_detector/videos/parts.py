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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.videos.models import Observation, Video, still_wanted
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


class ClaimLost(Exception):
    """Someone took the part over (its claim went stale or slow) or the parts folder is gone."""


@dataclass(frozen=True)
class ClaimHolder:
    token: str | None  # None while the file is being written or unreadable
    frames_done: int
    frames_total: int
    age_s: float  # since its last refresh


class PartClaim:
    """A marker file beside a part while someone draws it, so that the background threads of several
    workers, and finalise, do not draw the same part at once; it names its holder (a token) and how far the
    drawing has got. Only an optimisation: a part drawn twice is still correct (each is written under a
    unique name and renamed), so a claim stops counting once ``stale_after_s`` passes without a refresh (a
    dead worker), and finalise may take over a part whose holder is slow."""

    def __init__(self, part: Path, stale_after_s: float = 10.0) -> None:
        self.path = part.with_name(part.name + ".claim")
        self.token = uuid.uuid4().hex
        self.stale_after_s = stale_after_s

    def take(self, frames_total: int) -> bool:
        """Claim the part; False if someone else holds a fresh claim. Raises FileNotFoundError if the
        parts folder is gone (the job was cancelled, retried, deleted or finished)."""
        try:
            os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            holder = self.holder()
            if holder is not None and holder.age_s < self.stale_after_s:
                return False
        self.take_over(frames_total)
        return True

    def take_over(self, frames_total: int) -> None:
        """Hold the claim whoever held it: the previous holder stops at its next refresh."""
        self._write(0, frames_total)

    def holder(self) -> ClaimHolder | None:
        try:
            text, modified = self.path.read_text(), self.path.stat().st_mtime
        except FileNotFoundError:
            return None
        fields = text.split()
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            return ClaimHolder(fields[0], int(fields[1]), int(fields[2]), max(0.0, time.time() - modified))
        return ClaimHolder(None, 0, 0, max(0.0, time.time() - modified))  # just created, not yet written

    def refresh(self, frames_done: int, frames_total: int) -> None:
        """Say the drawing is alive and how far it got; raises ClaimLost if the claim is no longer ours."""
        holder = self.holder()
        if holder is None or holder.token != self.token:
            raise ClaimLost
        try:
            self._write(frames_done, frames_total)
        except FileNotFoundError:
            raise ClaimLost from None

    def drop(self) -> None:
        holder = self.holder()
        if holder is not None and holder.token == self.token:
            self.path.unlink(missing_ok=True)

    def _write(self, frames_done: int, frames_total: int) -> None:
        scratch = self.path.with_name(f"{self.path.name}.{self.token}")
        scratch.write_text(f"{self.token} {frames_done} {frames_total}")
        os.replace(scratch, self.path)  # readers see the old claim or the new one, never half of one


def draw_claimed_part(
    source: Path,
    part: Path,
    timeline: OverlayTimeline,
    fps: float,
    frames: range,
    claim: PartClaim,
    on_frame: Callable[[int], None] | None = None,
    refresh_every_s: float = 0.5,
) -> bool:
    """Draw a part whose claim the caller holds, refreshing the claim as it goes, and let the claim go.
    False if the part was there already (drawn by someone else between the caller's check and its claim) or
    the claim was lost on the way (taken over, or the job's parts folder removed): then nothing is written."""
    refreshed_at = time.monotonic()

    def progress(frame_index: int) -> None:
        nonlocal refreshed_at
        if time.monotonic() - refreshed_at >= refresh_every_s:
            claim.refresh(frame_index - frames.start, len(frames))
            refreshed_at = time.monotonic()
        if on_frame is not None:
            on_frame(frame_index)

    scratch = unique_scratch_path(part)
    try:
        if part.exists():
            return False
        render_part(source, scratch, timeline, fps, frames, on_frame=progress)
        os.replace(scratch, part)
        return True
    except ClaimLost:
        return False
    finally:
        scratch.unlink(missing_ok=True)
        claim.drop()


class PartRenderer:
    """One background thread per worker process; ``request(video)`` after a segment is stored, and
    ``handed_over(video)`` around finalising it in the same process."""

    def __init__(self, sessions: sessionmaker[Session], keep_jobs: int = 4, uncertain_below: Callable[[], float] = lambda: 0.0) -> None:
        self._sessions = sessions
        self._uncertain_below = uncertain_below  # the emotion model's threshold, asked when a part is drawn
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

    @contextlib.contextmanager
    def handed_over(self, video_id: str) -> Iterator[None]:
        """While finalise runs: start no new part of this video (the part in hand is finished, and its claim
        tells finalise to wait for it)."""
        with self._lock:
            self._handed_over.add(video_id)
        try:
            yield
        finally:
            with self._lock:
                self._handed_over.discard(video_id)

    def _is_handed_over(self, video_id: str) -> bool:
        with self._lock:
            return video_id in self._handed_over

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
            if self._is_handed_over(video_id) or not self._still_wanted(video_id, attempt):
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
            timeline = OverlayTimeline(people_frames(nearby, progress.joiner.persons), hold_frames, self._uncertain_below())
            frames = range(segment.start, segment.end)
            claim = PartClaim(target)
            try:
                if not claim.take(len(frames)):
                    continue  # another worker draws it
            except FileNotFoundError:
                return  # the job was cancelled, retried, deleted or finished meanwhile: its folder is gone
            if self._is_handed_over(video_id):  # finalise came in meanwhile and may have looked for claims already
                claim.drop()
                return
            try:
                draw_claimed_part(source, target, timeline, fps, frames, claim)
            except FileNotFoundError:
                return  # the folder went while drawing

    def _still_wanted(self, video_id: str, attempt: int) -> bool:
        with self._sessions() as session:
            return still_wanted(session.get(Video, video_id), attempt)


def draw_missing_parts(
    source: Path,
    folder: Path,
    timeline: OverlayTimeline,
    fps: float,
    parts: list[tuple[int, range]],
    heartbeat: Callable[[], None],
    give_up_after_s: float = 30.0,
    own_frames_per_s_guess: float = 150.0,
) -> int:
    """Finalise's share: draw every part in ``parts`` still missing. A part another thread holds a claim on
    is waited for while that thread is on course to finish it sooner than drawing it here from the start
    would (a background thread on a busy worker runs at low priority); otherwise it is taken over.
    Returns how many parts were drawn here."""
    drawn_here, own_rate = 0, own_frames_per_s_guess

    def draw(index: int, frames: range, claim: PartClaim) -> None:
        nonlocal drawn_here, own_rate
        started = time.monotonic()
        if draw_claimed_part(source, part_path(folder, index), timeline, fps, frames, claim, on_frame=lambda _: heartbeat()):
            drawn_here += 1
            own_rate = len(frames) / max(1e-3, time.monotonic() - started)

    waiting: dict[int, range] = {}
    for index, frames in parts:
        claim = PartClaim(part_path(folder, index))
        if claim.take(len(frames)):
            draw(index, frames, claim)
        else:
            waiting[index] = frames
    first_seen: dict[int, tuple[float, int]] = {}  # part → when its holder was first seen, and how far it had got
    give_up_at = time.monotonic() + give_up_after_s
    while waiting:
        heartbeat()
        time.sleep(0.1)
        for index, frames in list(waiting.items()):
            claim = PartClaim(part_path(folder, index))
            holder = claim.holder()
            if part_path(folder, index).exists():
                del waiting[index]
                continue
            now = time.monotonic()
            if holder is not None and holder.age_s < claim.stale_after_s and now < give_up_at:
                seen_at, seen_done = first_seen.setdefault(index, (now, holder.frames_done))
                if now - seen_at < 1.0:
                    continue  # too soon to tell its pace
                pace = (holder.frames_done - seen_done) / (now - seen_at)
                left_s = (holder.frames_total - holder.frames_done) / pace if pace > 0 else float("inf")
                if left_s <= len(frames) / own_rate:
                    continue
            claim.take_over(len(frames))  # stale, slow, gone or waited on too long: the holder stops at its next refresh
            draw(index, frames, claim)
            del waiting[index]
    return drawn_here
