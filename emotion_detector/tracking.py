"""Track ids across frames (ByteTrack from supervision) and per-track smoothing of the model outputs."""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Container
from dataclasses import dataclass, field

import numpy as np
import supervision as sv


@dataclass(frozen=True)
class FaceAttributes:
    """Model outputs for N faces, in detection order."""

    emotion: np.ndarray  # (N, 7) probabilities
    age_years: np.ndarray  # (N,)
    gender: np.ndarray  # (N, 2) probabilities

    @classmethod
    def empty(cls) -> FaceAttributes:
        return cls(np.zeros((0, 7), np.float32), np.zeros(0, np.float32), np.zeros((0, 2), np.float32))


def lost_after_frames(nominal_fps: float, lost_after_s: float) -> int:
    """Frames (at the nominal rate) that a lost face's track is kept for: it can be found again until then."""
    return max(1, round(nominal_fps * lost_after_s))


class FaceTracker:
    """ByteTrack over face boxes. Returns a track id per detection, in detection order, or -1 for a face
    seen for the first time mid-stream (ByteTrack confirms a new track on its second matching frame)."""

    def __init__(self, nominal_fps: float, lost_after_s: float):
        self.lost_after_frames = lost_after_frames(nominal_fps, lost_after_s)
        self._id_offset = 0  # added to the ByteTrack's ids: tracks after a cut never reuse an id (end_tracks)
        self._max_id = 0
        self._tracker = self._new_tracker()

    def _new_tracker(self) -> sv.ByteTrack:
        # ByteTrack keeps a lost track for frame_rate / 30 * lost_track_buffer frames. supervision 0.30 marks
        # its ByteTrack deprecated in favour of the separate `trackers` package, which requires the
        # non-headless opencv-python; the pinned supervision keeps working, so we stay on it for now.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return sv.ByteTrack(frame_rate=30, lost_track_buffer=self.lost_after_frames, minimum_matching_threshold=0.8)

    def end_tracks(self) -> None:
        """A shot cut: every track ends, lost ones too. The faces after it get new ids, never one used before,
        and are confirmed on their first frame (as at the start of a stream)."""
        self._id_offset = self._max_id
        self._tracker = self._new_tracker()

    def update(self, detections: sv.Detections) -> np.ndarray:
        ids = np.full(len(detections), -1, dtype=int)
        if len(detections) == 0:
            self._tracker.update_with_detections(detections)
            return ids
        tagged = sv.Detections(
            xyxy=detections.xyxy,
            confidence=detections.confidence,
            class_id=np.zeros(len(detections), dtype=int),
            data={"index": np.arange(len(detections))},
        )
        tracked = self._tracker.update_with_detections(tagged)
        if len(tracked):  # nothing confirmed yet comes back as a bare empty Detections
            ids[tracked.data["index"]] = np.asarray(tracked.tracker_id) + self._id_offset
            self._max_id = max(self._max_id, int(ids.max()))
        return ids


@dataclass
class AgeGenderSchedule:
    """Which faces of a frame need age and gender measured. Apparent age and gender change far slower than
    expression, so a tracked face needs them only on every ``every_n_frames``-th frame of its track; faces
    without a track id, and tracks new or unmeasured for n frames, always do. Live and video use this one rule.

    ``carried`` (optional) holds the tracks that really have values to carry over: a track the schedule
    counted as measured but whose measurement never arrived (the model server was down for that frame) is
    due again instead of being left without age and gender."""

    every_n_frames: int
    _measured_at: dict[int, int] = field(default_factory=dict)  # track → frame of its last measurement
    _frame: int = 0

    def due(self, track_ids: np.ndarray, carried: Container[int] | None = None) -> np.ndarray:
        """Call once per frame: (N,) bool, and the due tracks are recorded as measured on this frame."""
        self._frame += 1
        # Entries n frames old mean the same as none; dropping them keeps the map to the tracks in view.
        self._measured_at = {t: f for t, f in self._measured_at.items() if self._frame - f < self.every_n_frames}
        due = np.array(
            [t < 0 or int(t) not in self._measured_at or (carried is not None and int(t) not in carried) for t in track_ids], dtype=bool
        )
        self._measured_at.update({int(t): self._frame for t in track_ids[due] if t >= 0})
        return due


# Apparent age and gender do not change within a track, so they are estimated from all its measurements so far:
# the median of its ages (robust to a frame that reads a turned or blurred face as 20 years older), and the
# gender whose summed log-probabilities lead. Consecutive frames of one face are far from independent, so each
# measurement counts for EVIDENCE_PER_MEASUREMENT of one (confidence grows over about a second of measurements,
# not at once), and the sum is capped at MAX_LOG_ODDS so that a track that switched to another person can still
# turn after as many contrary measurements (about 5 s at the default schedule) instead of never.
AGE_MEASUREMENTS_KEPT = 256
EVIDENCE_PER_MEASUREMENT = 0.25
MAX_LOG_ODDS = 12.0
_PROBABILITY_FLOOR = 0.02  # one measurement moves the log-odds by at most 0.25 * log(0.98 / 0.02) ~ 0.97


@dataclass
class _TrackState:
    emotion: np.ndarray
    ages_years: deque[float]
    gender_log_odds: np.ndarray  # (2,) summed, weighted log-probabilities; their softmax is the estimate
    last_frame: int
    latest: tuple[float, np.ndarray] = (float("nan"), np.zeros(0))  # the last measured age and gender, as measured

    @classmethod
    def first(cls, emotion: np.ndarray, age_years: float, gender: np.ndarray, frame: int) -> _TrackState:
        state = cls(emotion, deque(maxlen=AGE_MEASUREMENTS_KEPT), np.zeros(len(gender), np.float64), frame)
        state.measured(age_years, gender)
        return state

    def measured(self, age_years: float, gender: np.ndarray) -> None:
        self.latest = (age_years, gender)
        self.ages_years.append(age_years)
        log_p = np.log(np.clip(np.asarray(gender, np.float64), _PROBABILITY_FLOOR, 1.0))
        self.gender_log_odds = self.gender_log_odds + EVIDENCE_PER_MEASUREMENT * (log_p - log_p.max())
        self.gender_log_odds -= self.gender_log_odds.max()  # only differences matter; the leader sits at 0
        np.maximum(self.gender_log_odds, -MAX_LOG_ODDS, out=self.gender_log_odds)

    @property
    def age_years(self) -> float:
        return float(np.median(self.ages_years))

    @property
    def gender(self) -> np.ndarray:
        odds = np.exp(self.gender_log_odds)
        probabilities: np.ndarray = (odds / odds.sum()).astype(np.float32)
        return probabilities


@dataclass
class AttributeSmoother:
    """Per track: an exponential moving average of the expression probabilities (expressions change; labels
    should not flicker), and age and gender estimated from all the track's measurements so far (see above); faces
    without a track id pass through unchanged. A face whose age and gender were not measured on this frame (NaN,
    see ``AgeGenderSchedule``) keeps its track's values. ``new_frame_weight`` 1 turns all smoothing off: each
    frame shows its own measurements."""

    new_frame_weight: float
    forget_after_frames: int
    _tracks: dict[int, _TrackState] = field(default_factory=dict)
    _frame: int = 0

    @property
    def track_ids(self) -> Container[int]:
        """The tracks with smoothed values to carry over (for ``AgeGenderSchedule.due``)."""
        return self._tracks.keys()

    def update(self, track_ids: np.ndarray, found: FaceAttributes) -> FaceAttributes:
        self._frame += 1
        w = self.new_frame_weight
        emotion, age, gender = found.emotion.copy(), found.age_years.astype(np.float32).copy(), found.gender.copy()
        for i, track_id in enumerate(track_ids):
            measured = not np.isnan(age[i])
            state = self._tracks.get(int(track_id)) if track_id >= 0 else None
            if state is None:
                if not measured:
                    raise ValueError(f"face {i} (track {track_id}) has no age / gender measured and none to carry over")
                if track_id >= 0:
                    state = self._tracks[int(track_id)] = _TrackState.first(emotion[i], float(age[i]), gender[i], self._frame)
                    if w < 1:
                        age[i], gender[i] = state.age_years, state.gender
                continue
            state.emotion = (1 - w) * state.emotion + w * emotion[i]
            if measured:
                state.measured(float(age[i]), gender[i])
            state.last_frame = self._frame
            emotion[i] = state.emotion
            if w < 1:
                age[i], gender[i] = state.age_years, state.gender
            elif not measured:  # no smoothing: the last measurements carried over
                age[i], gender[i] = state.latest
        stale = [tid for tid, s in self._tracks.items() if self._frame - s.last_frame > self.forget_after_frames]
        for tid in stale:
            del self._tracks[tid]
        return FaceAttributes(emotion, age, gender)
