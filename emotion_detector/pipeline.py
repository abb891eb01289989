"""The analysis stages, one typed object between each:

    image ─decode─► BGR array ─detect─► sv.Detections ─track─► + tracker_id ─attributes─► FaceAttributes
          ─smooth─► per-track averages ─► FrameAnalysis (the JSON of DESIGN.md §2)

``FaceAnalyzer`` does single images (no tracking); ``LiveSession`` adds tracking and smoothing for a stream.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import supervision as sv

from emotion_detector.crops import crop_faces
from emotion_detector.detection import DetectionSizer, FaceDetector
from emotion_detector.face_models import FaceModels
from emotion_detector.frames import ImageLimits, decode_image, image_size
from emotion_detector.labels import EMOTIONS, GENDERS
from emotion_detector.model_client import ModelServerError
from emotion_detector.settings import Settings
from emotion_detector.tracking import AgeGenderSchedule, AttributeSmoother, FaceAttributes, FaceTracker

T = TypeVar("T")


@dataclass(frozen=True)
class Face:
    box_xyxy: tuple[float, float, float, float]
    score: float
    emotion_probabilities: np.ndarray  # (7,) in EMOTIONS order
    age_years: float
    gender_probabilities: np.ndarray  # (2,) in GENDERS order
    track_id: int | None = None
    emotion_uncertain_below: float = 0.0  # the emotion model's calibrated threshold (0: it has none)

    @property
    def emotion_uncertain(self) -> bool:
        """The top expression is more often wrong than right at this confidence: shown as uncertain, not as a label."""
        return bool(self.emotion_probabilities.max() < self.emotion_uncertain_below)

    def to_json(self) -> dict:
        emotion = int(np.argmax(self.emotion_probabilities))
        gender = int(np.argmax(self.gender_probabilities))
        face = {
            "box": [round(float(v), 1) for v in self.box_xyxy],
            "score": round(self.score, 4),
            "emotion": {
                "label": EMOTIONS[emotion],
                "confidence": round(float(self.emotion_probabilities[emotion]), 4),
                "uncertain": self.emotion_uncertain,
                "probabilities": {label: round(float(p), 4) for label, p in zip(EMOTIONS, self.emotion_probabilities, strict=True)},
            },
            "age": {"years": round(float(self.age_years), 1)},
            "gender": {"label": GENDERS[gender], "confidence": round(float(self.gender_probabilities[gender]), 4)},
        }
        return {"id": self.track_id, **face} if self.track_id is not None else face


@dataclass
class Timer:
    timings_ms: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        yield
        self.timings_ms[name] = round(self.timings_ms.get(name, 0.0) + (time.perf_counter() - started) * 1000, 2)


@dataclass(frozen=True)
class FrameAnalysis:
    faces: list[Face]
    width: int
    height: int
    timing_ms: dict[str, float]

    def to_json(self) -> dict:
        return {"faces": [face.to_json() for face in self.faces], "width": self.width, "height": self.height, "timing_ms": self.timing_ms}


class FaceAnalyzer:
    """Stateless: detection, crops and one batched model-server call per model. Shared by all sessions."""

    def __init__(self, detector: FaceDetector, client: FaceModels, settings: Settings):
        self.detector = detector
        self.client = client
        self.settings = settings
        self.frame_limits = ImageLimits(settings.max_frame_bytes, settings.max_image_pixels, settings.max_image_side_px)
        self.image_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, settings.max_image_side_px)

    def full_resolution_below_face_px(self) -> float:
        """Faces narrower than this (frame pixels) are cropped from the full-size frame: at half size their
        crop would be smaller than the largest model input (crops are squares of about the face's width)."""
        return 2.0 * max(spec.size for spec in self.client.specs().values())

    def detect(self, image_bgr: np.ndarray, max_input_side: int | None = None) -> sv.Detections:
        detections = self.detector.detect(image_bgr, max_input_side)
        if len(detections) > self.settings.max_faces_per_frame:
            keep = np.argsort(-detections.confidence)[: self.settings.max_faces_per_frame]
            detections = detections[np.sort(keep)]
        return detections

    def attributes(
        self, image_bgr: np.ndarray, boxes_xyxy: np.ndarray, detector_name: str, age_gender_for: np.ndarray | None = None
    ) -> FaceAttributes:
        """Expression for every box; age and gender for the boxes in ``age_gender_for`` (default: all), NaN
        for the rest. One batched request per model that has any face to score, all in flight at once."""
        if len(boxes_xyxy) == 0:
            return FaceAttributes.empty()
        wanted = np.ones(len(boxes_xyxy), dtype=bool) if age_gender_for is None else np.asarray(age_gender_for, dtype=bool)
        batches = {}
        for name, spec in self.client.specs().items():
            boxes = boxes_xyxy if spec.every_face else boxes_xyxy[wanted]
            if len(boxes):
                batches[name] = spec.normalise(crop_faces(image_bgr, boxes, spec.crop_rule(detector_name), spec.size, spec.grey))
        outputs = self.client.predict(batches)
        age = np.full(len(boxes_xyxy), np.nan, np.float32)
        gender = np.full((len(boxes_xyxy), 2), np.nan, np.float32)
        if wanted.any():  # columns in our label order, whatever order the server's model uses
            age[wanted], gender[wanted] = outputs["age"].reshape(-1), outputs["gender"][:, self._columns("gender", GENDERS)]
        return FaceAttributes(emotion=outputs["emotion"][:, self._columns("emotion", EMOTIONS)], age_years=age, gender=gender)

    def _columns(self, head: str, ours: tuple[str, ...]) -> list[int]:
        theirs = self.client.labels(head)
        if sorted(theirs) != sorted(ours):
            raise ModelServerError(f"the model server's {head} labels {list(theirs)} are not {list(ours)}")
        return [theirs.index(label) for label in ours]

    def analyze_image(self, data: bytes, detect: bool = True) -> FrameAnalysis:
        """One picture: every face found (or, with ``detect=False``, the whole picture as one face crop)."""
        timer = Timer()
        with timer.stage("decode"):
            image = decode_image(data, self.image_limits)
        height, width = image.shape[:2]
        with timer.stage("detect"):
            if detect:
                detections = self.detect(image)
                boxes, scores, detector_name = detections.xyxy, detections.confidence, self.detector.name
            else:
                boxes, scores, detector_name = np.array([[0, 0, width, height]], np.float32), np.ones(1, np.float32), "none"
        with timer.stage("models"):
            found = self.attributes(image, boxes, detector_name)
        timer.timings_ms["total"] = round(sum(timer.timings_ms.values()), 2)
        faces = [
            Face(
                tuple(boxes[i].tolist()),
                float(scores[i]),
                found.emotion[i],
                float(found.age_years[i]),
                found.gender[i],
                emotion_uncertain_below=self.client.uncertain_below("emotion"),
            )
            for i in range(len(boxes))
        ]
        return FrameAnalysis(faces, width, height, timer.timings_ms)


class LiveSession:
    """One live stream: ids that stay with a face while it stays in view, and labels smoothed per track."""

    def __init__(self, analyzer: FaceAnalyzer, nominal_fps: float = 10.0, run_cpu_bound: Callable[[Callable[[], T]], T] | None = None):
        settings = analyzer.settings
        self.analyzer = analyzer
        # Decoding and detection hold the CPU for milliseconds without needing the GIL; the web app runs them
        # on a native thread so its event loop keeps serving other sockets meanwhile.
        self.run_cpu_bound = run_cpu_bound or (lambda work: work())
        self.tracker = FaceTracker(nominal_fps, settings.track_lost_after_s)
        self.smoother = AttributeSmoother(settings.smoothing_new_frame_weight, forget_after_frames=self.tracker.lost_after_frames)
        self.age_gender_schedule = AgeGenderSchedule(settings.age_gender_every_n_frames)
        self.detection_sizer = DetectionSizer.from_settings(settings)

    def process(self, data: bytes) -> FrameAnalysis:
        timer = Timer()
        image, scale, detections, (width, height) = self.run_cpu_bound(lambda: self._decode_and_detect(data, timer))
        with timer.stage("track"):
            track_ids = self.tracker.update(detections)
        with timer.stage("models"):
            due = self.age_gender_schedule.due(track_ids, carried=self.smoother.track_ids)
            found = self.analyzer.attributes(image, detections.xyxy / scale, self.analyzer.detector.name, age_gender_for=due)
        with timer.stage("smooth"):
            smoothed = self.smoother.update(track_ids, found)
        timer.timings_ms["total"] = round(sum(timer.timings_ms.values()), 2)
        faces = [
            Face(
                tuple(detections.xyxy[i].tolist()),
                float(detections.confidence[i]),
                smoothed.emotion[i],
                float(smoothed.age_years[i]),
                smoothed.gender[i],
                None if track_ids[i] < 0 else int(track_ids[i]),
                self.analyzer.client.uncertain_below("emotion"),
            )
            for i in range(len(detections))
        ]
        return FrameAnalysis(faces, width, height, timer.timings_ms)

    def _decode_and_detect(self, data: bytes, timer: Timer) -> tuple[np.ndarray, float, sv.Detections, tuple[int, int]]:
        """The decoded image, how many frame pixels one of its pixels spans (1, or about 2), the faces in
        frame pixels, and the frame's (width, height).

        A detector with a fixed input size (BlazeFace: 128 px) finds the same faces in a half-size decode,
        which takes a third of the time. The face crops need the resolution, though: a face narrower than
        ``full_resolution_below_face_px`` in the frame would give a crop with fewer pixels than the model's
        input, so then the frame is decoded again at full size."""
        half_size = self.analyzer.detector.fixed_input_side_px is not None
        with timer.stage("decode"):
            image = decode_image(data, self.analyzer.frame_limits, half_size=half_size)
        size = image_size(data)
        scale = size[0] / image.shape[1]
        with timer.stage("detect"):
            detections = self.analyzer.detect(image, self.detection_sizer.side_for(image))
            self.detection_sizer.update(detections)
        if scale > 1 and len(detections):
            detections.xyxy = detections.xyxy * scale
            for points in ("landmarks", "keypoints"):
                if points in detections.data:
                    detections.data[points] = detections.data[points] * scale
            sides = np.minimum(detections.xyxy[:, 2] - detections.xyxy[:, 0], detections.xyxy[:, 3] - detections.xyxy[:, 1])
            if sides.min() < self.analyzer.full_resolution_below_face_px():
                with timer.stage("decode"):
                    image, scale = decode_image(data, self.analyzer.frame_limits), 1.0
        return image, scale, detections, size
