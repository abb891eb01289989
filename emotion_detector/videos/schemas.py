"""The JSON of video jobs (DESIGN.md §2, video jobs), one schema each: what the API returns and pages read,
and the job summary stored with a finished job. Built here, serialised with ``to_json``; nothing else
assembles these dicts by hand."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from emotion_detector.videos.models import JobState
from emotion_detector.videos.summary import PersonRule, PersonStats


class _Schema(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class VideoCreated(_Schema):
    """202 answer to an upload."""

    id: str
    status: JobState
    status_url: str


class VideoStatus(_Schema):
    """GET /api/v1/videos/{id}; also the answer to cancel and retry."""

    id: str
    status: JobState
    progress: float  # 0..1
    filename: str
    status_url: str
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)  # "error" only when there is one


class VideoListItem(_Schema):
    id: str
    filename: str
    status: JobState
    progress: float
    created_at: str  # ISO 8601, UTC ("...Z")
    duration_s: float
    people: int | None  # main people, once done
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True) | {"people": self.people}


class VideoList(_Schema):
    videos: list[VideoListItem]


class MixBin(_Schema):
    start_s: float
    faces: int
    share: dict[str, float]  # expression (``uncertain`` included) → share of the faces in the bin


class JobSummary(_Schema):
    """Written when a job finishes (Video.summary); its fields other than ``main_people`` and ``group_mix``
    are the results' ``video`` object."""

    duration_s: float
    frames: int
    frames_analysed: int
    every_n_frames: int
    processing_s: float
    speed_x_realtime: float
    segments: int
    segment_busy_s: float  # summed analysis time of the segments (several may run at once)
    render_busy_s: float  # summed drawing time of the annotated video's parts
    detector: str
    min_face_px: float | None = None  # the smallest face looked for, in the video's pixels (None: a job from before it was kept)
    models: dict[str, int | str]
    emotion_uncertain_below: float
    main_people: list[int]
    group_mix: list[MixBin]
    # Who counts as a person (the rule in force when the job ran) and the shot cuts found (how many count is
    # worked out by the results from the people's statistics). None / empty: a job finished before these were
    # kept (results fill them in).
    person_rule: PersonRule | None = None
    shot_cuts_s: list[float] = []


class VideoInfo(_Schema):
    model_config = ConfigDict(frozen=True, extra="allow")  # plus the job summary's own fields

    filename: str
    width: int
    height: int
    fps: float


class TimelineEntry(_Schema):
    """One face object (DESIGN.md §2) per analysed frame, with where it is in the video; beside it the
    frame's unsmoothed expression probabilities and the valence and arousal derived from the smoothed ones
    (affect.py)."""

    model_config = ConfigDict(frozen=True, extra="allow")  # the face object's fields

    frame: int
    time_s: float
    raw_probabilities: dict[str, float]
    valence: float
    arousal: float


class PersonResult(PersonStats):
    id: int
    main: bool
    counted: bool  # a person by the rule (VideoInfo.person_rule); false: a brief detection
    timeline: list[TimelineEntry]


class VideoResults(_Schema):
    """GET /api/v1/videos/{id}/results."""

    id: str
    status: JobState
    video: VideoInfo
    people: list[PersonResult]
    group_mix: list[MixBin]
