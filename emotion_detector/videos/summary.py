"""Pure functions from observations to results: joining segment tracks into people, per-person statistics,
per-video statistics, and the JSON / CSV exports (DESIGN.md §2, video jobs)."""

from __future__ import annotations

import bisect
import csv
import io
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, model_validator

from emotion_detector.affect import valence_arousal
from emotion_detector.labels import EMOTIONS
from emotion_detector.pipeline import Face, gender_probabilities
from emotion_detector.videos.analysis import box_iou

MIN_MATCH_IOU = 0.5

Box = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True)
class Row:
    """One observation as stored (what summaries need of it)."""

    segment_index: int
    frame_index: int
    local_track: int
    in_overlap: bool
    box_xyxy: tuple[float, float, float, float]
    score: float
    emotion: tuple[float, ...]
    age_years: float
    female_probability: float
    emotion_raw: tuple[float, ...] | None = None  # before smoothing (None: stored before it was kept)


def join_tracks(rows: list[Row], shot_cuts: Iterable[int] = ()) -> dict[tuple[int, int], int]:
    """(segment, local track) → person id for a whole video (see TrackJoiner)."""
    by_segment: dict[int, list[Row]] = defaultdict(list)
    for row in rows:
        by_segment[row.segment_index].append(row)
    joiner = TrackJoiner()
    cuts = sorted(set(shot_cuts))
    for segment in range(max(by_segment, default=-1) + 1):
        joiner.add_segment(segment, by_segment.get(segment, []), cuts)
    return joiner.persons


def crosses_cut(frames: Iterable[int], shot_cuts: list[int]) -> bool:
    """Whether frames of one would-be track lie on both sides of a shot cut (``shot_cuts``: sorted frame
    indices, each the first frame of a new shot)."""
    ordered = sorted(frames)
    if not ordered:
        return False
    # A cut c separates frames < c from frames >= c: one lies in (first, last].
    at = bisect.bisect_right(shot_cuts, ordered[0])
    return at < len(shot_cuts) and shot_cuts[at] <= ordered[-1]


class TrackJoiner:
    """Joins the segments' tracks into people, one segment after the other in order. Neighbouring segments
    both analyse the overlap frames; a track of one and a track of the next that cover the same faces there
    (mean box IoU >= 0.5, best pairs first) are one person, unless a shot cut lies between their frames: each
    segment's tracker ends its tracks at the cuts it finds, and this keeps a cut that only one of two
    segments saw (one at the later segment's first frame) from being bridged by the join. Person ids are numbered 1, 2, ... in order of
    first appearance, so adding later segments never changes an earlier segment's ids: the annotated video's
    part for a segment can be drawn as soon as the segments up to it are analysed."""

    def __init__(self) -> None:
        self.persons: dict[tuple[int, int], int] = {}
        self._root: dict[tuple[int, int], tuple[int, int]] = {}  # a track → the first track of its chain
        self._person_of_root: dict[tuple[int, int], int] = {}
        self._previous: dict[tuple[int, int], dict[int, Box]] = {}  # the previous segment's track → frame → box
        self.segments_added = 0
        self.people_numbered = 0

    @classmethod
    def resume(cls, previous_rows: list[Row], previous_persons: dict[int, int], segments_added: int, people_numbered: int) -> TrackJoiner:
        """A joiner that goes on where one that had joined ``segments_added`` segments left off, from what
        was stored of it: the last joined segment's rows, its tracks' person ids (local track → person; a
        track seen only in its overlap may have none yet) and how many people were numbered. Each of those
        tracks stands for its chain: the next segment only ever matches tracks of the one before it."""
        joiner = cls()
        joiner.segments_added, joiner.people_numbered = segments_added, people_numbered
        for row in previous_rows:
            key = (row.segment_index, row.local_track)
            joiner._previous.setdefault(key, {})[row.frame_index] = row.box_xyxy
            joiner._root[key] = key
            if row.local_track in previous_persons:
                joiner._person_of_root[key] = previous_persons[row.local_track]
        return joiner

    def add_segment(self, segment: int, rows: list[Row], shot_cuts: list[int] | None = None) -> None:
        """Adds the next segment's rows (all of them, overlap included) and numbers its tracks. ``shot_cuts``:
        the sorted frames where the video's shots start, as far as they are known (at least those found by
        this segment and the one before it)."""
        cuts = shot_cuts or []
        if segment != self.segments_added:
            raise ValueError(f"segments are joined in order: expected segment {self.segments_added}, got {segment}")
        boxes: dict[tuple[int, int], dict[int, Box]] = defaultdict(dict)
        first_owned: dict[tuple[int, int], int] = {}  # a track → its first frame outside the overlap
        for row in rows:
            key = (segment, row.local_track)
            boxes[key][row.frame_index] = row.box_xyxy
            if not row.in_overlap:
                first_owned[key] = min(first_owned.get(key, row.frame_index), row.frame_index)
        previous_boxes = self._previous
        candidates = []
        for a, a_boxes in previous_boxes.items():
            for b, b_boxes in boxes.items():
                shared = a_boxes.keys() & b_boxes.keys()
                if shared and not crosses_cut([*a_boxes, *b_boxes], cuts):
                    iou = float(np.mean([box_iou(a_boxes[f], b_boxes[f]) for f in shared]))
                    if iou >= MIN_MATCH_IOU:
                        candidates.append((iou, len(shared), a, b))
        for key in boxes:
            self._root[key] = key
        used_a, used_b = set(), set()
        for _, _, a, b in sorted(candidates, reverse=True):  # greedy, best overlap first
            if a not in used_a and b not in used_b:
                used_a.add(a)
                used_b.add(b)
                self._root[b] = self._root[a]
        # A chain gets its id at its first frame outside an overlap: every chain numbered earlier was first
        # seen before this segment, every later one after it.
        # Ties are broken by this segment's track (not by the chain's root, which a resumed joiner knows only
        # as the previous segment's track).
        new_roots: dict[tuple[int, int], tuple[int, tuple[int, int]]] = {}
        for key, frame in first_owned.items():
            root = self._root[key]
            if root not in self._person_of_root:
                new_roots[root] = min(new_roots.get(root, (frame, key)), (frame, key))
        for root in sorted(new_roots, key=new_roots.__getitem__):
            self.people_numbered += 1
            self._person_of_root[root] = self.people_numbered
        for key in [*previous_boxes, *boxes]:  # an earlier track seen only in the overlap may be numbered now
            person = self._person_of_root.get(self._root[key])
            if person is not None:
                self.persons[key] = person
        self._previous = boxes
        self.segments_added += 1


@dataclass(frozen=True)
class PersonFrame:
    frame_index: int
    box_xyxy: tuple[float, float, float, float]
    emotion: tuple[float, ...]
    age_years: float
    female_probability: float
    score: float  # the detector's confidence
    emotion_raw: tuple[float, ...] | None = None  # before smoothing (None: not kept)

    def face(self, person: int, uncertain_below: float = 0.0) -> Face:
        """The face object of DESIGN.md §2 for this frame."""
        gender = gender_probabilities(self.female_probability)
        raw = None if self.emotion_raw is None else np.asarray(self.emotion_raw)
        return Face(self.box_xyxy, self.score, np.asarray(self.emotion), self.age_years, gender, person, uncertain_below, raw)


def people_frames(rows: list[Row], persons: dict[tuple[int, int], int]) -> dict[int, list[PersonFrame]]:
    """Each person's frames in order; overlap rows (analysed twice) are left to the segment that owns them."""
    frames: dict[int, dict[int, PersonFrame]] = defaultdict(dict)
    for row in rows:
        if row.in_overlap:
            continue
        person = persons[(row.segment_index, row.local_track)]
        frames[person][row.frame_index] = PersonFrame(
            row.frame_index, row.box_xyxy, row.emotion, row.age_years, row.female_probability, row.score, row.emotion_raw
        )
    return {person: [by_frame[f] for f in sorted(by_frame)] for person, by_frame in sorted(frames.items())}


UNCERTAIN = "uncertain"  # a frame whose top expression is below the model's calibrated threshold


def shown_expressions(probabilities: np.ndarray, uncertain_below: float) -> list[str]:
    """Per frame, the expression shown: the top label, or ``uncertain`` when its probability is below the
    emotion model's calibrated threshold (such a label is more often wrong than right)."""
    top = probabilities.argmax(axis=1)
    return [EMOTIONS[i] if p >= uncertain_below else UNCERTAIN for i, p in zip(top, probabilities.max(axis=1), strict=True)]


class AgeStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    mean_years: float
    std_years: float


class GenderStats(BaseModel):
    model_config = ConfigDict(frozen=True)

    label: str
    confidence: float


class PersonStats(BaseModel):
    """One person's statistics over the video, as stored (Person.stats) and returned in the results."""

    model_config = ConfigDict(frozen=True)

    first_seen_s: float
    last_seen_s: float
    first_frame: int
    last_frame: int
    frames_seen: int
    share_of_analysed_frames: float
    # frames per expression shown; frames too uncertain to name one are counted apart
    expression_counts: dict[str, int]
    most_common_expression: str
    # mean probability the model gave each expression over this person's frames
    mean_probability: dict[str, float]
    # mean confidence on the frames where that expression was the top label (None: never the top one)
    mean_confidence_when_top: dict[str, float | None]
    age: AgeStats
    gender: GenderStats
    # Time in view: analysed frames × the time between analysed frames (what the person rule reads).
    seen_s: float
    mean_score: float | None  # the detector's mean confidence (None: statistics stored before it was kept)
    # Derived from the expression probabilities (affect.py), mean over the frames: in [-1, 1].
    valence_mean: float
    arousal_mean: float

    @model_validator(mode="before")
    @classmethod
    def _filled_in(cls, data: Any) -> Any:
        """Statistics stored before these fields existed: valence and arousal are linear in the
        probabilities, so their means are those of the mean probabilities; time in view is the span seen."""
        if isinstance(data, dict) and "mean_probability" in data and "valence_mean" not in data:
            mean = np.array([data["mean_probability"].get(label, 0.0) for label in EMOTIONS])
            valence, arousal = valence_arousal(mean)
            data = {
                "seen_s": round(data.get("last_seen_s", 0.0) - data.get("first_seen_s", 0.0), 3),
                "mean_score": None,
                **data,
                "valence_mean": round(float(valence), 4),
                "arousal_mean": round(float(arousal), 4),
            }
        return data

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PersonRule(BaseModel):
    """Who counts as a person: a track seen at least ``min_seen_s`` seconds (in view) with a mean detector
    score of at least ``min_mean_score``. Other tracks are brief detections, listed apart and never counted."""

    model_config = ConfigDict(frozen=True)

    min_seen_s: float
    min_mean_score: float

    @classmethod
    def from_settings(cls, settings: Any) -> PersonRule:
        """From a ``Settings`` (its ``person_min_seen_s`` and ``person_min_mean_score``)."""
        return cls(min_seen_s=settings.person_min_seen_s, min_mean_score=settings.person_min_mean_score)

    def counts(self, stats: PersonStats) -> bool:
        score_ok = stats.mean_score is None or stats.mean_score >= self.min_mean_score
        return stats.seen_s >= self.min_seen_s and score_ok


def person_stats(
    frames: list[PersonFrame], fps: float, analysed_frames: int, uncertain_below: float = 0.0, every_n_frames: int = 1
) -> PersonStats:
    """``every_n_frames``: every how many frames of the video one was analysed (the time each stands for)."""
    probabilities = np.array([f.emotion for f in frames], dtype=np.float64)
    valence, arousal = valence_arousal(probabilities).mean(axis=0)
    top = probabilities.argmax(axis=1)
    counts = Counter(shown_expressions(probabilities, uncertain_below))
    confident = Counter({label: n for label, n in counts.items() if label != UNCERTAIN})
    female = float(np.mean([f.female_probability for f in frames]))
    ages = np.array([f.age_years for f in frames])
    return PersonStats(
        first_seen_s=round(frames[0].frame_index / fps, 3),
        last_seen_s=round(frames[-1].frame_index / fps, 3),
        first_frame=frames[0].frame_index,
        last_frame=frames[-1].frame_index,
        frames_seen=len(frames),
        share_of_analysed_frames=round(len(frames) / max(1, analysed_frames), 4),
        expression_counts={label: counts.get(label, 0) for label in (*EMOTIONS, UNCERTAIN)},
        most_common_expression=(confident or counts).most_common(1)[0][0],
        mean_probability={label: round(float(probabilities[:, i].mean()), 4) for i, label in enumerate(EMOTIONS)},
        mean_confidence_when_top={
            label: round(float(probabilities[top == i, i].mean()), 4) if (top == i).any() else None for i, label in enumerate(EMOTIONS)
        },
        age=AgeStats(mean_years=round(float(ages.mean()), 1), std_years=round(float(ages.std()), 1)),
        gender=GenderStats(label="female" if female >= 0.5 else "male", confidence=round(max(female, 1 - female), 4)),
        seen_s=round(len(frames) * every_n_frames / fps, 3),
        mean_score=round(float(np.mean([f.score for f in frames])), 4),
        valence_mean=round(float(valence), 4),
        arousal_mean=round(float(arousal), 4),
    )


def group_mix(
    people: dict[int, list[PersonFrame]], fps: float, duration_s: float, bin_s: float = 1.0, uncertain_below: float = 0.0
) -> list[dict[str, Any]]:
    """Per time bin, the share of each expression shown (``uncertain`` included) over every face seen in that bin."""
    bins: dict[int, Counter[str]] = defaultdict(Counter)
    for frames in people.values():
        shown = shown_expressions(np.array([f.emotion for f in frames], dtype=np.float64), uncertain_below)
        for frame, expression in zip(frames, shown, strict=True):
            bins[int(frame.frame_index / fps // bin_s)][expression] += 1
    mix = []
    for b in range(int(np.ceil(duration_s / bin_s))):
        total = sum(bins[b].values())
        share = {e: round(bins[b][e] / total, 4) if total else 0.0 for e in (*EMOTIONS, UNCERTAIN)}
        mix.append({"start_s": round(b * bin_s, 3), "faces": total, "share": share})
    return mix


def main_people(stats: dict[int, PersonStats], min_share: float = 0.1, min_frames: int = 5, rule: PersonRule | None = None) -> list[int]:
    """People seen long enough to matter (brief false detections and passers-by are not); with ``rule``, only
    people it counts."""
    return [
        p
        for p, s in stats.items()
        if s.frames_seen >= min_frames and s.share_of_analysed_frames >= min_share and (rule is None or rule.counts(s))
    ]


CSV_COLUMNS = [
    "person",
    "frame",
    "time_s",
    "x1",
    "y1",
    "x2",
    "y2",
    "emotion",
    "confidence",
    "emotion_uncertain",
    *[f"p_{e}" for e in EMOTIONS],
    "age_years",
    "gender",
    "gender_confidence",
]


def csv_rows(people: dict[int, list[PersonFrame]], fps: float, uncertain_below: float = 0.0) -> Iterator[list[object]]:
    for person, frames in people.items():
        for f in frames:
            top = int(np.argmax(f.emotion))
            female = f.female_probability
            yield [
                person,
                f.frame_index,
                round(f.frame_index / fps, 3),
                *f.box_xyxy,
                EMOTIONS[top],
                f.emotion[top],
                f.emotion[top] < uncertain_below,
                *f.emotion,
                f.age_years,
                "female" if female >= 0.5 else "male",
                round(max(female, 1 - female), 5),
            ]


def to_csv(rows: Iterable[list[object]]) -> Iterator[str]:
    """CSV text in chunks (streamed to the client)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for i, row in enumerate(rows):
        writer.writerow(row)
        if i % 500 == 499:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
