"""A job's last step, run once every segment is analysed and joined into people and every part of the
annotated video is drawn (each by its own leased task): per-person statistics, the parts joined into the
annotated video, the summary, and the job marked done. It draws nothing and waits for nothing."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import delete, select

from emotion_detector.videos import leases
from emotion_detector.videos.leases import Database, Lease
from emotion_detector.videos.models import JobState, Person, RenderTask, Video, utcnow
from emotion_detector.videos.render import join_parts, part_path, parts_dir
from emotion_detector.videos.schemas import JobSummary
from emotion_detector.videos.steps import stored_people, stored_shot_cuts
from emotion_detector.videos.summary import PersonRule, group_mix, main_people, person_stats

PERSON_COLUMNS = {"first_frame", "last_frame", "frames_seen"}  # the statistics a Person row has columns for


@dataclass(frozen=True)
class Models:
    """What the summary says of the models that analysed the video."""

    detector: str
    versions: dict[str, int | str]
    emotion_uncertain_below: float
    min_face_px_for: Callable[[int, int], float]  # (width, height) → the smallest face looked for in such frames


def finalise(db: Database, lease: Lease, models: Models) -> JobSummary | None:
    """The finished job's summary, or None if the job was cancelled, retried or deleted meanwhile (then
    nothing is written). Raises if the parts cannot be joined."""
    with db.sessions() as session:
        video = session.get(Video, lease.video_id)
        if video is None:
            return None
        segments = [(s.index, s.start_frame, s.seconds or 0.0) for s in video.segments]
        render_s = sum(r.seconds or 0.0 for r in session.scalars(select(RenderTask).where(RenderTask.video_id == lease.video_id)))
        people = stored_people(session, lease.video_id)
        cuts = stored_shot_cuts(session, lease.video_id)
        fps, frame_count, duration_s, every_n = video.fps, video.frame_count, video.duration_s, video.every_n_frames
        width, height = video.width, video.height
        source, started_at = Path(video.source_path), video.started_at
    analysed = len(range(0, frame_count, every_n))
    stats = {person: person_stats(frames, fps, analysed, models.emotion_uncertain_below, every_n) for person, frames in people.items()}
    rule = PersonRule.from_settings(db.settings)
    counted = {person for person, s in stats.items() if rule.counts(s)}

    folder = parts_dir(source, lease.job_attempt)
    joined = folder / "annotated.mp4"  # gone with the folder if the job is cancelled, retried or deleted meanwhile
    join_parts([(part_path(folder, index), start) for index, start, _ in segments], joined, fps)

    finished_at = utcnow()
    processing_s = max(1e-3, (finished_at - (started_at or finished_at)).total_seconds())
    summary = JobSummary(
        duration_s=duration_s,
        frames=frame_count,
        frames_analysed=analysed,
        every_n_frames=every_n,
        processing_s=round(processing_s, 3),
        speed_x_realtime=round(duration_s / processing_s, 3),
        segments=len(segments),
        segment_busy_s=round(sum(seconds for *_, seconds in segments), 3),
        render_busy_s=round(render_s, 3),
        detector=models.detector,
        min_face_px=round(models.min_face_px_for(width, height), 1),
        models=models.versions,
        emotion_uncertain_below=models.emotion_uncertain_below,
        main_people=sorted(main_people(stats, rule=rule)),
        # The expression mix of the people counted: a background face seen for a frame is not the audience.
        group_mix=group_mix(
            {p: frames for p, frames in people.items() if p in counted}, fps, duration_s, uncertain_below=models.emotion_uncertain_below
        ),
        person_rule=rule,
        shot_cuts_s=[round(frame / fps, 3) for frame in cuts],
    )
    target = source.parent / "annotated.mp4"
    with db.sessions.begin() as session:
        if not leases.finish(session, lease):
            return None  # cancelled, retried or deleted meanwhile: its parts folder went with it
        video = session.get(Video, lease.video_id)  # locked by finish, which found it
        if video is None:
            return None
        os.replace(joined, target)  # under the job's row lock, so a cancel or retry cannot come in between
        session.execute(delete(Person).where(Person.video_id == lease.video_id))
        session.add_all(
            Person(video_id=lease.video_id, person=p, stats=s.to_json(), **s.model_dump(include=PERSON_COLUMNS)) for p, s in stats.items()
        )
        video.summary, video.annotated_path = summary.to_json(), str(target)
        video.status, video.finished_at = JobState.DONE, finished_at
    shutil.rmtree(folder, ignore_errors=True)
    return summary
