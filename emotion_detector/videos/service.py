"""What the web app does with videos: accept an upload, report status, build results, cancel, retry, delete."""

from __future__ import annotations

import builtins
import errno
import logging
import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TypeAlias

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.affect import valence_arousal
from emotion_detector.labels import EMOTIONS
from emotion_detector.pipeline import CpuBoundRunner, run_here
from emotion_detector.settings import Settings
from emotion_detector.videos import jobs
from emotion_detector.videos.db import SchemaUpgrade, sessions
from emotion_detector.videos.models import (
    FINISHED,
    Finalisation,
    JobState,
    Observation,
    Person,
    RenderTask,
    Segment,
    TaskState,
    Video,
    utcnow,
)
from emotion_detector.videos.probe import VideoRejected, probe
from emotion_detector.videos.schemas import (
    JobSummary,
    PersonResult,
    TimelineEntry,
    VideoInfo,
    VideoList,
    VideoListItem,
    VideoResults,
    VideoStatus,
)
from emotion_detector.videos.steps import stored_people
from emotion_detector.videos.summary import PersonFrame, PersonRule, PersonStats, csv_rows, to_csv

log = logging.getLogger(__name__)


# Whose videos a request may see: an API key's id, or None when auth is off (one user: every video).
Owner: TypeAlias = str | None


INCOMING = ".incoming"  # uploads are written here (``<id>.part``) until they are proven to be videos


class NotFound(LookupError):
    pass


class Conflict(RuntimeError):
    pass


class StorageFull(OSError):
    """The disk (or quota) the uploads go to is full: nothing of this upload was kept."""


# Out of space, over a quota, or over the file system's largest file: the server's storage, not the upload.
STORAGE_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class VideoService:
    def __init__(self, settings: Settings, schema: SchemaUpgrade | None = None):
        """``schema``: its upgrade, running meanwhile (the web app starts without its database); without
        one the schema is brought up to date here, now."""
        self.settings = settings
        if schema is None:
            schema = SchemaUpgrade(settings.database_url)
            schema.run()
        self.schema = schema
        self.sessions = sessions(settings.database_url)
        jobs.configure(settings)

    def check(self) -> dict[str, str]:
        """What the health check reports: ``{"database": "ok" | "down: ...", "queue": ...}``."""
        found = {}
        try:
            with self.sessions() as session:
                session.execute(select(1))
            found["database"] = "ok" if self.schema.ready.is_set() else f"down: {self.schema.problem}"
        except Exception as error:  # any failure means the same to the health check: down
            found["database"] = f"down: {type(error).__name__}"
        try:
            jobs.check_queue()
            found["queue"] = "ok"
        except Exception as error:
            found["queue"] = f"down: {type(error).__name__}"
        return found

    # ---- intake ------------------------------------------------------------------------------------------

    def create(
        self,
        upload: Iterable[bytes],
        filename: str,
        every_n_frames: int | None = None,
        *,
        owner: Owner,
        blur_faces: bool = False,
        run_cpu_bound: CpuBoundRunner = run_here,
    ) -> Video:
        """Store the upload (chunks as they arrive), prove it is a video, record the job and queue it. On any
        failure the partial file is removed: nothing half-written stays behind. ``run_cpu_bound`` runs the
        probe (FFmpeg decoding, minutes of demuxing for a long video) off a gevent worker's event loop."""
        video_id = uuid.uuid4().hex
        incoming = self.settings.storage_dir / INCOMING
        incoming.mkdir(parents=True, exist_ok=True)
        partial = incoming / f"{video_id}.part"
        folder = self.settings.storage_dir / video_id
        try:
            written = _copy_limited(upload, partial, self.settings.video_max_bytes)
            if written == 0:
                raise VideoRejected("empty_upload", "the upload is empty")
            info = run_cpu_bound(lambda: probe(partial, self.settings.video_max_duration_s, self.settings.video_max_pixels))
            folder.mkdir(parents=True)
            source = folder / f"source{_safe_suffix(filename)}"
            os.replace(partial, source)
            video = Video(
                id=video_id,
                filename=_safe_name(filename),
                source_path=str(source),
                width=info.width,
                height=info.height,
                fps=info.fps,
                frame_count=info.frame_count,
                duration_s=info.duration_s,
                every_n_frames=every_n_frames or self.settings.analyse_every_n_frames,
                owner_id=owner,
                blur_faces=blur_faces,
            )
            with self.sessions.begin() as session:
                session.add(video)
        except BaseException as error:
            partial.unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            if isinstance(error, OSError) and error.errno in STORAGE_FULL_ERRNOS:
                log.error("upload refused: the storage at %s is full (%s)", self.settings.storage_dir, error.strerror)
                raise StorageFull(error.errno, "the server's storage is full: the upload was not stored") from error
            raise
        self._enqueue(video_id)
        return video

    def _enqueue(self, video_id: str) -> None:
        try:
            jobs.start.delay(video_id)
        except Exception as error:  # the broker is down: the job stays queued and a worker's sweep picks it up
            # One line: an outage, said as one (the health check names the queue), not a traceback per upload.
            problem = f"{type(error).__name__}: {error}"
            log.error("could not queue video %s now (%s); a worker will pick it up when the queue is back", video_id, problem)

    # ---- reading -----------------------------------------------------------------------------------------

    def get(self, video_id: str, *, owner: Owner) -> Video:
        with self.sessions() as session:
            video = _owned(session, video_id, owner)
            video.segments, video.renders  # noqa: B018 - loaded while the session is open
            return video

    def status(self, video_id: str, *, owner: Owner) -> VideoStatus:
        video = self.get(video_id, owner=owner)
        return VideoStatus(
            id=video.id,
            status=video.status,
            progress=round(_progress(video), 4),
            filename=video.filename,
            status_url=f"/api/v1/videos/{video.id}",
            error=video.error,
        )

    def list(self, *, owner: Owner) -> VideoList:
        query = select(Video).order_by(Video.created_at.desc())
        if owner is not None:
            query = query.where(Video.owner_id == owner)
        with self.sessions() as session:
            videos = session.scalars(query).all()
            return VideoList(
                videos=[
                    VideoListItem(
                        id=v.id,
                        filename=v.filename,
                        status=v.status,
                        progress=round(_progress(v), 4),
                        created_at=v.created_at.isoformat() + "Z",
                        duration_s=v.duration_s,
                        people=len(v.summary["main_people"]) if v.summary else None,
                        error=v.error,
                    )
                    for v in videos
                ]
            )

    def results(self, video_id: str, *, owner: Owner) -> VideoResults:
        video, summary = self._finished(video_id, owner)
        people = self._people_frames(video_id)
        with self.sessions() as session:
            rows = session.scalars(select(Person).where(Person.video_id == video_id).order_by(Person.person))
            stats = {p.person: PersonStats.model_validate(p.stats) for p in rows}
        main = set(summary.main_people)
        # The rule the job ran with (a job finished before it was kept: today's).
        rule = summary.person_rule or PersonRule.from_settings(self.settings)
        counted = {person for person, s in stats.items() if rule.counts(s)}
        return VideoResults(
            id=video.id,
            status=video.status,
            video=VideoInfo(
                filename=video.filename,
                width=video.width,
                height=video.height,
                fps=video.fps,
                **summary.model_dump(exclude={"group_mix", "main_people", "person_rule"}),
                person_rule=rule.model_dump(),
                people_counted=len(counted),
                brief_detections=len(stats) - len(counted),
            ),
            people=[
                PersonResult(
                    id=person,
                    main=person in main,
                    counted=person in counted,
                    **dict(stats[person]),
                    timeline=[_timeline_entry(f, person, video.fps, summary.emotion_uncertain_below) for f in frames],
                )
                for person, frames in people.items()
            ],
            group_mix=summary.group_mix,
        )

    def results_csv(self, video_id: str, *, owner: Owner) -> Iterator[str]:
        video, summary = self._finished(video_id, owner)
        return to_csv(csv_rows(self._people_frames(video_id), video.fps, summary.emotion_uncertain_below))

    def annotated_path(self, video_id: str, *, owner: Owner) -> Path:
        video = self.get(video_id, owner=owner)
        if video.status != JobState.DONE or not video.annotated_path or not Path(video.annotated_path).is_file():
            raise Conflict(f"video {video_id} has no annotated video yet ({video.status})")
        return Path(video.annotated_path)

    def _finished(self, video_id: str, owner: Owner) -> tuple[Video, JobSummary]:
        video = self.get(video_id, owner=owner)
        if video.status != JobState.DONE or video.summary is None:
            raise Conflict(f"video {video_id} is {video.status}; results exist once it is done")
        return video, JobSummary.model_validate(video.summary)

    def _people_frames(self, video_id: str) -> dict[int, builtins.list[PersonFrame]]:  # list: the method above
        with self.sessions() as session:
            return stored_people(session, video_id)

    # ---- changing ----------------------------------------------------------------------------------------

    def cancel(self, video_id: str, *, owner: Owner) -> VideoStatus:
        with self.sessions.begin() as session:
            video = _owned(session, video_id, owner, for_update=True)
            if video.status in FINISHED:
                raise Conflict(f"video {video_id} is {video.status}; only queued or running jobs can be cancelled")
            # Its tasks see the state at their next heartbeat, and store nothing.
            video.status, video.finished_at = JobState.CANCELLED, utcnow()
            source = video.source_path
        jobs.delete_parts(source)
        return self.status(video_id, owner=owner)

    def retry(self, video_id: str, *, owner: Owner) -> VideoStatus:
        """Start a failed or cancelled job again from scratch."""
        with self.sessions.begin() as session:
            video = _owned(session, video_id, owner, for_update=True)
            if video.status not in (JobState.FAILED, JobState.CANCELLED):
                raise Conflict(f"video {video_id} is {video.status}; only failed or cancelled jobs can be retried")
            _delete_results(session, video_id)
            video.status, video.error, video.segments_joined = JobState.QUEUED, None, 0
            video.started_at = video.finished_at = video.heartbeat_at = video.summary = video.annotated_path = None
            video.attempts += 1  # the old run's tasks still running see it, and store nothing
            source, attempt = video.source_path, video.attempts
        (Path(source).parent / "annotated.mp4").unlink(missing_ok=True)
        jobs.delete_parts(source, keep_attempt=attempt)
        self._enqueue(video_id)
        return self.status(video_id, owner=owner)

    def delete(self, video_id: str, *, owner: Owner) -> None:
        """Remove the files and every row; a running job is told to stop first."""
        remove_video(self.sessions, video_id, owner)

    def counts(self) -> dict[str, int]:
        with self.sessions() as session:
            return {str(status): n for status, n in session.execute(select(Video.status, func.count()).group_by(Video.status)).all()}


def remove_video(session_factory: sessionmaker[Session], video_id: str, owner: Owner) -> None:
    """Every row of the video, then its folder (upload, annotated video, parts). A task still running on it
    finds its rows gone at its next heartbeat and stores nothing."""
    with session_factory.begin() as session:
        video = _owned(session, video_id, owner, for_update=True)
        source = video.source_path
        _delete_results(session, video_id)
        session.delete(video)
    jobs.delete_files(source)


def _timeline_entry(frame: PersonFrame, person: int, fps: float, uncertain_below: float) -> TimelineEntry:
    face = frame.face(person, uncertain_below)
    valence, arousal = valence_arousal(face.emotion_probabilities)
    return TimelineEntry(
        frame=frame.frame_index,
        time_s=round(frame.frame_index / fps, 3),
        **face.to_json(),
        # Rows analysed before raw probabilities were kept: the smoothed ones are all there is.
        raw_probabilities={label: round(float(p), 4) for label, p in zip(EMOTIONS, face.emotion_raw_probabilities, strict=True)},
        valence=round(float(valence), 4),
        arousal=round(float(arousal), 4),
    )


def _owned(session: Session, video_id: str, owner: Owner, for_update: bool = False) -> Video:
    """The video, if ``owner`` may see it; another owner's video is as absent as a missing one (404, not 403:
    its existence is not revealed)."""
    video = session.get(Video, video_id, with_for_update=for_update)
    if video is None or (owner is not None and video.owner_id != owner):
        raise NotFound(video_id)
    return video


def _delete_results(session: Session, video_id: str) -> None:
    for table in (Observation, Person, Segment, RenderTask, Finalisation):
        session.execute(delete(table).where(table.video_id == video_id))


def _progress(video: Video) -> float:
    """Analysis 90 %, drawing the annotated video 10 %."""
    if video.status == JobState.DONE:
        return 1.0
    if not video.segments:
        return 0.0
    analysed = sum(s.frames_done for s in video.segments) / max(1, video.frame_count)
    drawn = sum(r.status == TaskState.DONE for r in video.renders) / max(1, len(video.renders))
    return min(0.99, 0.9 * analysed + 0.1 * drawn)


def _copy_limited(upload: Iterable[bytes], target: Path, max_bytes: int) -> int:
    written = 0
    with open(target, "wb") as out:
        for chunk in upload:
            written += len(chunk)
            if written > max_bytes:  # as soon as it passes: the rest is never read
                raise VideoRejected("video_too_large", f"the upload is larger than the limit of {max_bytes} bytes")
            out.write(chunk)
    return written


def _safe_name(filename: str) -> str:
    name = Path(filename or "video").name
    return re.sub(r"[^\w.\- ]", "_", name)[:200] or "video"


def _safe_suffix(filename: str) -> str:
    suffix = Path(filename or "").suffix.lower()
    return suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix) else ".video"
