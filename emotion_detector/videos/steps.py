"""The steps of a video job between analysing its segments and finalising it, apart from the queue:

- ``join_ready_segments``: the analysed segments are joined into people in order, as soon as the segments
  before them are, and their observations get their final person ids (TrackJoiner: a segment's ids never
  change once it is joined, so they are stored at once);
- ``draw_part``: the annotated video's part of a joined segment, from the stored observations around it.

Both read and write only the database and the job's files, so any worker can run them for any job."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import and_, func, select, update
from sqlalchemy.orm import Session

from emotion_detector.videos.db import rowcount
from emotion_detector.videos.leases import Database, Lease
from emotion_detector.videos.models import JobState, Observation, Segment, TaskState, Video
from emotion_detector.videos.render import OverlayTimeline, part_path, parts_dir, render_part, unique_scratch_path
from emotion_detector.videos.summary import PersonFrame, Row, TrackJoiner


def observation_rows(session: Session, video_id: str, segment_index: int) -> list[Row]:
    """The stored observations of one segment in frame order."""
    query = select(Observation).where(Observation.video_id == video_id, Observation.segment_index == segment_index)
    return [
        Row(
            o.segment_index,
            o.frame_index,
            o.local_track,
            o.in_overlap,
            o.box_xyxy,
            o.score,
            tuple(o.emotion),
            o.age_years,
            o.female_probability,
            None if o.emotion_raw is None else tuple(o.emotion_raw),
        )
        for o in session.scalars(query.order_by(Observation.frame_index, Observation.local_track))
    ]


def stored_people(session: Session, video_id: str, frames: range | None = None) -> dict[int, list[PersonFrame]]:
    """Each person's frames in order (of ``frames`` only, if given), from the observations whose person id
    is stored; overlap rows (analysed twice) are left to the segment that owns them."""
    query = select(Observation).where(Observation.video_id == video_id, Observation.in_overlap.is_(False), Observation.person.is_not(None))
    if frames is not None:
        query = query.where(Observation.frame_index >= frames.start, Observation.frame_index < frames.stop)
    people: dict[int, list[PersonFrame]] = {}
    for o in session.scalars(query.order_by(Observation.person, Observation.frame_index)):
        if o.person is None:  # excluded by the query
            continue
        people.setdefault(o.person, []).append(
            PersonFrame(
                o.frame_index,
                o.box_xyxy,
                tuple(o.emotion),
                o.age_years,
                o.female_probability,
                o.score,
                None if o.emotion_raw is None else tuple(o.emotion_raw),
            )
        )
    return people


def stored_shot_cuts(session: Session, video_id: str) -> list[int]:
    """The frames where the video's shots start, as found by its analysed segments (sorted, each once)."""
    found = session.scalars(select(Segment.shot_cuts).where(Segment.video_id == video_id, Segment.shot_cuts.is_not(None)))
    return sorted({frame for cuts in found if cuts for frame in cuts})


def join_ready_segments(db: Database, video_id: str) -> range:
    """Join the analysed segments that follow the joined ones and store their person ids. Returns the
    segments joined now: their parts of the annotated video can be drawn."""
    with db.sessions.begin() as session:
        # A write first: it takes the job's row lock (PostgreSQL) or the database's write lock (SQLite) before
        # anything is read, so the joins of one job run one at a time, each from what the last one stored.
        locked = session.execute(
            update(Video).where(Video.id == video_id, Video.status == JobState.RUNNING).values(segments_joined=Video.segments_joined)
        )
        if rowcount(locked) != 1:
            return range(0)
        video = session.get(Video, video_id)
        if video is None:  # the update above found it, in this transaction
            return range(0)
        first = stop = video.segments_joined
        while stop < len(video.segments) and video.segments[stop].status == TaskState.DONE:
            stop += 1
        if stop == first:
            return range(0)
        joiner = TrackJoiner() if first == 0 else _resumed_joiner(session, video_id, first)
        cuts = stored_shot_cuts(session, video_id)  # those of every analysed segment: the joined ones' included
        for index in range(first, stop):
            joiner.add_segment(index, observation_rows(session, video_id, index), cuts)
        # The previous segment's tracks seen only in its overlap may have been numbered by this join.
        for (segment_index, local_track), person in joiner.persons.items():
            if segment_index >= first - 1:
                track = and_(Observation.segment_index == segment_index, Observation.local_track == local_track)
                session.execute(update(Observation).where(Observation.video_id == video_id, track).values(person=person))
        video.segments_joined = stop
    return range(first, stop)


def _resumed_joiner(session: Session, video_id: str, segments_joined: int) -> TrackJoiner:
    last = segments_joined - 1
    tracks = session.execute(
        select(Observation.local_track, Observation.person)
        .where(Observation.video_id == video_id, Observation.segment_index == last, Observation.person.is_not(None))
        .distinct()
    )
    persons = {track: person for track, person in tracks if person is not None}  # None: excluded by the query
    numbered = session.scalar(select(func.coalesce(func.max(Observation.person), 0)).where(Observation.video_id == video_id)) or 0
    return TrackJoiner.resume(observation_rows(session, video_id, last), persons, segments_joined, numbered)


@dataclass(frozen=True)
class PartPlan:
    """What drawing one part needs, read from the database."""

    source: Path
    target: Path
    frames: range
    fps: float
    timeline: OverlayTimeline
    blur_faces: bool = False


def plan_part(db: Database, lease: Lease, uncertain_below: float) -> PartPlan | None:
    """None if the job or its segment is gone."""
    with db.sessions() as session:
        video = session.get(Video, lease.video_id)
        segment = session.scalar(select(Segment).where(Segment.video_id == lease.video_id, Segment.index == lease.index))
        if video is None or segment is None:
            return None
        frames = range(segment.start_frame, segment.end_frame)
        # The part's own observations, and those just before it whose labels are still held up on its first frames.
        nearby = range(max(0, frames.start - OverlayTimeline.lookback_frames(video.every_n_frames)), frames.stop)
        people = stored_people(session, lease.video_id, nearby)
        source = Path(video.source_path)
        target = part_path(parts_dir(source, lease.job_attempt), lease.index)
        timeline = OverlayTimeline(people, video.every_n_frames, uncertain_below, stored_shot_cuts(session, lease.video_id))
        return PartPlan(source, target, frames, video.fps, timeline, video.blur_faces)


def draw_part(plan: PartPlan, on_frame: Callable[[int], None]) -> None:
    """Draw the part under a unique name and rename it into place: a part exists whole or not at all, and two
    workers drawing it at once (a lease taken over from a stalled worker) write the same file. Raises
    FileNotFoundError when the job's parts folder is gone (cancelled, retried or deleted meanwhile)."""
    scratch = unique_scratch_path(plan.target)
    try:
        render_part(plan.source, scratch, plan.timeline, plan.fps, plan.frames, on_frame=on_frame, blur_faces=plan.blur_faces)
        os.replace(scratch, plan.target)
    finally:
        scratch.unlink(missing_ok=True)
