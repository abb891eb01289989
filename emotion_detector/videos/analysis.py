"""Analyse a stretch of a video: decode (PyAV), detect, track, and score faces on the model server.

The same stages as the live path (detector, FaceTracker, crops, ModelServerClient). Frames are scored in
batches: while the model server works on one batch, this process decodes and detects the next, and
detection runs a couple of frames ahead of tracking on a thread of its own.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import av
import cv2
import numpy as np
import supervision as sv

from emotion_detector.crops import crop_faces
from emotion_detector.detection import DetectionSizer, FaceDetector
from emotion_detector.model_client import ModelServerClient, PendingPrediction
from emotion_detector.tracking import AgeGenderSchedule, FaceTracker
from emotion_detector.videos.probe import frame_timestamps

FIRST_UNCONFIRMED_ID = 1_000_000  # ids for faces the tracker never confirmed (seen in one frame only)


class Cancelled(Exception):
    pass


@dataclass(frozen=True)
class FaceObservation:
    frame_index: int
    local_track: int
    box_xyxy: tuple[float, float, float, float]
    score: float
    emotion: tuple[float, ...]  # EMOTIONS order
    age_years: float
    female_probability: float


def decode_frames(path: Path, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR image) for start <= index < stop. Seeks to the keyframe before ``start`` and
    numbers frames by their position in the file's timestamp order (exact for variable frame rates)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
        timestamps = frame_timestamps(container)
        index_of = {pts: i for i, pts in enumerate(timestamps)}
        stop = min(stop, len(timestamps))
        if start >= stop:
            return
        container.seek(timestamps[start], stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = index_of.get(frame.pts)
            if index is None or index < start:
                continue
            if index >= stop:
                return
            yield index, frame_to_bgr(frame)


BT601_OR_UNSPECIFIED = {2, 5, 6}  # AVColorSpace: unspecified (decoders assume BT.601 for SD), BT470BG, SMPTE170M


def frame_to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as a BGR image. OpenCV converts 4:2:0 BT.601 (most phone and web video) in under a
    millisecond per 640×360 frame where PyAV's swscale conversion takes ~7 ms; anything else goes to PyAV."""
    if frame.format.name == "yuv420p" and frame.colorspace in BT601_OR_UNSPECIFIED and frame.width % 2 == frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


@dataclass(frozen=True)
class _Frame:
    index: int
    boxes: np.ndarray  # (N, 4)
    scores: np.ndarray  # (N,)
    track_ids: np.ndarray  # (N,), -1: not confirmed yet
    age_gender_due: np.ndarray  # (N,) bool: measure age and gender for this face (else carry its track's over)


@dataclass
class _Batch:
    frames: list[_Frame]
    pending: PendingPrediction | None = None


class SegmentAnalyzer:
    """Expression on every analysed frame; a tracked face's age and gender on every ``age_gender_every_n``-th
    analysed frame of its track, carried over in between (the same rule as the live path)."""

    def __init__(
        self,
        detector: FaceDetector,
        client: ModelServerClient,
        fps: float,
        every_n_frames: int = 1,
        batch_frames: int = 8,
        age_gender_every_n: int = 1,
        new_sizer: Callable[[], DetectionSizer] | None = None,  # None: every frame at the detector's full size
    ):
        self.detector, self.client = detector, client
        self.fps, self.every_n_frames, self.batch_frames = fps, every_n_frames, batch_frames
        self.age_gender_every_n = age_gender_every_n
        self.new_sizer = new_sizer
        self.detect_ahead_frames = 2

    def run(self, path: Path, start: int, stop: int, on_progress: Callable[[int], bool] | None = None) -> list[FaceObservation]:
        """Observations for the analysed frames in [start, stop) (every n-th frame from ``start``).
        ``on_progress(frames_done)`` is called after each batch; returning False raises Cancelled."""
        tracker = FaceTracker(self.fps / self.every_n_frames, lost_after_s=1.0)
        schedule = AgeGenderSchedule(self.age_gender_every_n)
        carried: dict[int, tuple[float, float]] = {}  # track → (age, female probability) last measured
        observations: list[FaceObservation] = []
        batch, images = _Batch([]), []
        in_flight: _Batch | None = None
        done = 0
        with contextlib.closing(self._detected_frames(path, start, stop)) as frames:  # stops the detection thread
            for index, image, detections in frames:
                done = index - start + 1
                track_ids = tracker.update(detections)
                batch.frames.append(_Frame(index, detections.xyxy, detections.confidence, track_ids, schedule.due(track_ids)))
                images.append(image)
                if len(batch.frames) == self.batch_frames:
                    batch.pending = self._submit(batch.frames, images)
                    if in_flight:
                        observations += self._collect(in_flight, carried)
                    in_flight, batch, images = batch, _Batch([]), []
                    if on_progress and not on_progress(done):
                        raise Cancelled()
        if batch.frames:
            batch.pending = self._submit(batch.frames, images)
        for pending in (in_flight, batch):
            if pending:
                observations += self._collect(pending, carried)
        if on_progress and not on_progress(done):
            raise Cancelled()
        return link_first_sightings(observations)

    def _detected_frames(self, path: Path, start: int, stop: int) -> Iterator[tuple[int, np.ndarray, sv.Detections]]:
        """(index, image, faces) for the analysed frames, in order. Detection runs a few frames ahead on a
        thread of its own: the detector's runtime releases the GIL, so it overlaps with decoding, tracking
        and cropping here (a segment took ~5 ms a frame with all of them in turn on one core). One thread,
        so frames are detected in order and the sizer sees each frame's faces before sizing the next."""
        sizer = self.new_sizer() if self.new_sizer else None

        def detect(image: np.ndarray) -> sv.Detections:
            detections = self.detector.detect(image, sizer.side_for(image) if sizer else None)
            if sizer:
                sizer.update(detections)
            return detections

        ahead: deque[tuple[int, np.ndarray, Future[sv.Detections]]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect") as pool:
            try:
                for index, image in decode_frames(path, start, stop):
                    if index % self.every_n_frames:  # aligned to the whole video, so neighbours analyse the same overlap frames
                        continue
                    ahead.append((index, image, pool.submit(detect, image)))
                    if len(ahead) > self.detect_ahead_frames:
                        index, image, detections = ahead.popleft()
                        yield index, image, detections.result()
                while ahead:
                    index, image, detections = ahead.popleft()
                    yield index, image, detections.result()
            finally:
                for *_, detections in ahead:  # stopped early (cancelled, failed): drop what was not started
                    detections.cancel()

    def _submit(self, frames: list[_Frame], images: list[np.ndarray]) -> PendingPrediction | None:
        with_faces = [(frame, image) for frame, image in zip(frames, images, strict=True) if len(frame.boxes)]
        if not with_faces:
            return None
        inputs = {}
        for name, spec in self.client.specs().items():
            rule = spec.crop_rule(self.detector.name)
            boxes = [(frame.boxes if spec.every_face else frame.boxes[frame.age_gender_due], image) for frame, image in with_faces]
            crops = [crop_faces(image, b, rule, spec.size, spec.grey) for b, image in boxes if len(b)]
            if crops:
                inputs[name] = spec.normalise(np.concatenate(crops))
        return self.client.submit(inputs)

    def _collect(self, batch: _Batch, carried: dict[int, tuple[float, float]]) -> list[FaceObservation]:
        """Observations in frame order; ``carried`` (track → last measured age, female probability) is read
        for faces not due and updated from those measured, so collect batches in the order they were made."""
        if batch.pending is None:
            return []
        outputs = batch.pending.result()
        emotion = outputs["emotion"]
        age, gender = outputs.get("age", np.zeros(0)).reshape(-1), outputs.get("gender", np.zeros((0, 2)))
        female = self.client.labels("gender").index("female")
        observations, row, measured_row = [], 0, 0
        for frame in batch.frames:
            for box, score, track, due in zip(frame.boxes, frame.scores, frame.track_ids, frame.age_gender_due, strict=True):
                if due:
                    age_years, female_probability = float(age[measured_row]), float(gender[measured_row, female])
                    measured_row += 1
                    if track >= 0:
                        carried[int(track)] = (age_years, female_probability)
                else:
                    age_years, female_probability = carried[int(track)]
                observations.append(
                    FaceObservation(
                        frame_index=frame.index,
                        local_track=int(track),
                        box_xyxy=tuple(round(float(v), 2) for v in box),
                        score=round(float(score), 4),
                        emotion=tuple(round(float(p), 5) for p in emotion[row]),
                        age_years=round(age_years, 2),
                        female_probability=round(female_probability, 5),
                    )
                )
                row += 1
        return observations


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link_first_sightings(observations: list[FaceObservation]) -> list[FaceObservation]:
    """ByteTrack confirms a face that appears mid-stream on its second frame, so its first frame has no
    id (-1). Give that sighting the id of the track that starts in the next analysed frame at the same
    place; a face never confirmed keeps an id of its own. Nothing is dropped."""
    by_frame: dict[int, list[FaceObservation]] = defaultdict(list)
    for observation in observations:
        by_frame[observation.frame_index].append(observation)
    frames = sorted(by_frame)
    first_frame_of: dict[int, int] = {}
    for frame in frames:
        for observation in by_frame[frame]:
            if observation.local_track >= 0:
                first_frame_of.setdefault(observation.local_track, frame)
    next_own_id = FIRST_UNCONFIRMED_ID
    relabelled = []
    for position, frame in enumerate(frames):
        following = by_frame[frames[position + 1]] if position + 1 < len(frames) else []
        for observation in by_frame[frame]:
            if observation.local_track >= 0:
                relabelled.append(observation)
                continue
            starts_next = [o for o in following if o.local_track >= 0 and first_frame_of[o.local_track] == o.frame_index]
            best = max(starts_next, key=lambda o: box_iou(o.box_xyxy, observation.box_xyxy), default=None)
            if best is not None and box_iou(best.box_xyxy, observation.box_xyxy) >= 0.3:
                relabelled.append(replace(observation, local_track=best.local_track))
            else:
                relabelled.append(replace(observation, local_track=next_own_id))
                next_own_id += 1
    return relabelled
