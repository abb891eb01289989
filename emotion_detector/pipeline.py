"""One frame pipeline behind every running mode (web live, image API, video segments, and the CLI and edge
modes), one typed object between its stages:

    frame ─decode─► BGR array ─detect─► sv.Detections (capped) ─track─► track ids ─models─► FaceAttributes
          ─smooth─► per-track averages ─► FrameAnalysis (faces: the JSON of DESIGN.md §2)

Tracked modes also look for shot cuts (shots.py) before tracking: a cut ends every track, so no identity
carries across it, and the frame is marked (``FrameAnalysis.shot_cut``).

``FramePipeline`` is built from ``PipelineOptions`` with an explicit ``RunningMode``:

- ``IMAGE``: independent pictures; no tracking, no smoothing, every face measured.
- ``LIVE``: a stream taken one frame at a time as it comes; the caller drops frames that queue up while one
  is processed (newest wins), so nothing queues unboundedly.
- ``VIDEO``: every frame of a file, in order; detection runs a few frames ahead on a thread of its own and
  the models get one batched request per few frames, while the next frames are decoded and detected.

Live and video share every rule: the face cap, the track-lost time, one age / gender carry-over
(``AgeGenderSchedule`` + ``AttributeSmoother``) and one smoothing rule (an exponential moving average per
track), so the live overlay, a video's timeline, its statistics and its annotated video show the same label
for the same face and frame.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import supervision as sv

from emotion_detector.crops import crop_faces
from emotion_detector.detection import DetectionSizer, FaceDetector
from emotion_detector.face_models import FaceModels, PendingOutputs
from emotion_detector.frames import ImageLimits, decode_image, image_size
from emotion_detector.labels import EMOTIONS, GENDERS
from emotion_detector.model_client import ModelServerError
from emotion_detector.schemas import AgeResult, EmotionResult, FaceResult, GenderResult, ImageAnalysis
from emotion_detector.settings import Settings
from emotion_detector.shots import ShotCutDetector, colour_histogram
from emotion_detector.tracking import AgeGenderSchedule, AttributeSmoother, FaceAttributes, FaceTracker

T = TypeVar("T")


class CpuBoundRunner(Protocol):
    """Runs ``work`` and returns its result (e.g. on a native thread, see web/live.py)."""

    def __call__(self, work: Callable[[], T], /) -> T: ...


def run_here(work: Callable[[], T]) -> T:
    return work()


class RunningMode(StrEnum):
    IMAGE = "image"
    LIVE = "live"
    VIDEO = "video"


@dataclass(frozen=True)
class Face:
    box_xyxy: tuple[float, float, float, float]
    score: float
    emotion_probabilities: np.ndarray  # (7,) in EMOTIONS order
    age_years: float
    gender_probabilities: np.ndarray  # (2,) in GENDERS order
    track_id: int | None = None
    emotion_uncertain_below: float = 0.0  # the emotion model's calibrated threshold (0: it has none)
    # This frame's expression probabilities before smoothing (None: not known, e.g. a face rebuilt from storage
    # without them); ``emotion_probabilities`` are the smoothed ones, which every label is read from.
    emotion_raw: np.ndarray | None = None

    @property
    def emotion_raw_probabilities(self) -> np.ndarray:
        """The unsmoothed probabilities, or the smoothed ones where those are all there is."""
        return self.emotion_probabilities if self.emotion_raw is None else self.emotion_raw

    @property
    def emotion_uncertain(self) -> bool:
        """The top expression is more often wrong than right at this confidence: shown as uncertain, not as a label."""
        return bool(self.emotion_probabilities.max() < self.emotion_uncertain_below)

    @property
    def emotion_label(self) -> str:
        return EMOTIONS[int(np.argmax(self.emotion_probabilities))]

    @property
    def female_probability(self) -> float:
        return float(self.gender_probabilities[GENDERS.index("female")])

    def to_schema(self) -> FaceResult:
        emotion = int(np.argmax(self.emotion_probabilities))
        gender = int(np.argmax(self.gender_probabilities))
        return FaceResult(
            id=self.track_id,
            box=[round(float(v), 1) for v in self.box_xyxy],
            score=round(self.score, 4),
            emotion=EmotionResult(
                label=EMOTIONS[emotion],
                confidence=round(float(self.emotion_probabilities[emotion]), 4),
                uncertain=self.emotion_uncertain,
                probabilities={label: round(float(p), 4) for label, p in zip(EMOTIONS, self.emotion_probabilities, strict=True)},
            ),
            age=AgeResult(years=round(float(self.age_years), 1)),
            gender=GenderResult(label=GENDERS[gender], confidence=round(float(self.gender_probabilities[gender]), 4)),
        )

    def to_json(self) -> dict[str, Any]:
        return self.to_schema().to_json()


def gender_probabilities(female_probability: float) -> np.ndarray:
    """(2,) in GENDERS order, from the probability of ``female`` (how video observations store gender)."""
    probabilities = np.empty(len(GENDERS), np.float32)
    probabilities[GENDERS.index("female")] = female_probability
    probabilities[GENDERS.index("male")] = 1.0 - female_probability
    return probabilities


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
    frame_index: int | None = None  # position in the video (video mode)
    shot_cut: bool = False  # a new shot starts here: every track ended before this frame

    @property
    def video_frame_index(self) -> int:
        """``frame_index``, for a frame analysed as part of a video (the video mode always sets it)."""
        if self.frame_index is None:
            raise ValueError("this frame was not analysed as a frame of a video: it has no frame index")
        return self.frame_index

    def to_schema(self) -> ImageAnalysis:
        return ImageAnalysis(
            faces=[face.to_schema() for face in self.faces], width=self.width, height=self.height, timing_ms=self.timing_ms
        )

    def to_json(self) -> dict[str, Any]:
        return self.to_schema().to_json()


@dataclass(frozen=True)
class PipelineOptions:
    mode: RunningMode
    nominal_fps: float = 10.0  # frames per second that reach the pipeline (a video's: its fps / every n-th)
    max_faces_per_frame: int = 16  # the most confident ones are kept
    track_lost_after_s: float = 1.0  # a face unseen this long ends its track
    smoothing_new_frame_weight: float = 0.35  # 1: no smoothing
    age_gender_every_n_frames: int = 5  # a tracked face's age and gender are measured on every n-th frame
    detection_max_side_px: int = 480
    detection_min_side_px: int = 320
    detection_full_every_n_frames: int = 5  # 1: detection always at the full size (no shrinking copy)
    batch_frames: int = 8  # video mode: frames per model request
    detect_ahead_frames: int = 2  # video mode: frames detected ahead of tracking
    shot_cut_threshold: float | None = 0.2  # tracked modes: see shots.py (None: no cut detection)

    def __post_init__(self) -> None:
        problems = [
            f"{name} must be {rule}, got {value!r}"
            for name, value, ok, rule in (
                ("nominal_fps", self.nominal_fps, self.nominal_fps > 0, "> 0"),
                ("max_faces_per_frame", self.max_faces_per_frame, self.max_faces_per_frame >= 1, ">= 1"),
                ("track_lost_after_s", self.track_lost_after_s, self.track_lost_after_s > 0, "> 0"),
                ("smoothing_new_frame_weight", self.smoothing_new_frame_weight, 0 < self.smoothing_new_frame_weight <= 1, "in (0, 1]"),
                ("age_gender_every_n_frames", self.age_gender_every_n_frames, self.age_gender_every_n_frames >= 1, ">= 1"),
                ("batch_frames", self.batch_frames, self.batch_frames >= 1, ">= 1"),
                ("detect_ahead_frames", self.detect_ahead_frames, self.detect_ahead_frames >= 0, ">= 0"),
                (
                    "shot_cut_threshold",
                    self.shot_cut_threshold,
                    self.shot_cut_threshold is None or 0 < self.shot_cut_threshold < 1,
                    "None or in (0, 1)",
                ),
            )
            if not ok
        ]
        if problems:
            raise ValueError("; ".join(problems))

    @classmethod
    def from_settings(cls, settings: Settings, mode: RunningMode, nominal_fps: float = 10.0) -> PipelineOptions:
        """Every mode's options come from the one Settings object: live and video cannot drift apart."""
        return cls(
            mode=mode,
            nominal_fps=nominal_fps,
            max_faces_per_frame=settings.max_faces_per_frame,
            track_lost_after_s=settings.track_lost_after_s,
            smoothing_new_frame_weight=settings.smoothing_new_frame_weight,
            age_gender_every_n_frames=settings.age_gender_every_n_frames,
            detection_max_side_px=settings.detection_max_side_px,
            detection_min_side_px=settings.detection_min_side_px,
            detection_full_every_n_frames=settings.detection_full_every_n_frames,
            shot_cut_threshold=settings.shot_cut_threshold,
        )


class FaceAnalyzer:
    """What every pipeline shares and nothing per stream: the detector, the models and the input limits.
    Built once per process; ``pipeline(options)`` makes a pipeline per stream, video segment or request."""

    def __init__(self, detector: FaceDetector, models: FaceModels, settings: Settings):
        self.detector = detector
        self.client = models
        self.settings = settings
        self.frame_limits = ImageLimits(settings.max_frame_bytes, settings.max_image_pixels, settings.max_image_side_px)
        self.image_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, settings.max_image_side_px)

    def pipeline(
        self,
        mode: RunningMode,
        nominal_fps: float = 10.0,
        run_cpu_bound: CpuBoundRunner | None = None,
    ) -> FramePipeline:
        """A pipeline with the options from settings (other options: ``FramePipeline(analyzer, options)``)."""
        return FramePipeline(self, PipelineOptions.from_settings(self.settings, mode, nominal_fps), run_cpu_bound)

    def analyze_image(self, data: bytes, detect: bool = True) -> FrameAnalysis:
        """One picture: every face found (or, with ``detect=False``, the whole picture as one face crop)."""
        return self.pipeline(RunningMode.IMAGE).process(data, detect=detect)

    def full_resolution_below_face_px(self) -> float:
        """Faces narrower than this (frame pixels) are cropped from the full-size frame: at half size their
        crop would be smaller than the largest model input (crops are squares of about the face's width)."""
        return 2.0 * max(spec.size for spec in self.client.specs().values())

    def model_inputs(
        self, images: list[np.ndarray], boxes: list[np.ndarray], due: list[np.ndarray], detector_name: str
    ) -> dict[str, np.ndarray]:
        """One batch per model over several frames: every face's crop for the expression model, the crops of
        faces due for age and gender (see AgeGenderSchedule) for theirs."""
        inputs: dict[str, np.ndarray] = {}
        for name, spec in self.client.specs().items():
            rule = spec.crop_rule(detector_name)
            crops = [
                crop_faces(image, b if spec.every_face else b[d], rule, spec.size, spec.grey)
                for image, b, d in zip(images, boxes, due, strict=True)
                if len(b) and (spec.every_face or d.any())
            ]
            if crops:
                inputs[name] = spec.normalise(np.concatenate(crops))
        return inputs

    def split_outputs(self, outputs: dict[str, np.ndarray], due: list[np.ndarray]) -> list[FaceAttributes]:
        """The batch's outputs back per frame, columns in our label order whatever order the models use; age
        and gender are NaN for faces not due (the smoother carries their track's values over)."""
        emotion_columns, gender_columns = self._columns("emotion", EMOTIONS), self._columns("gender", GENDERS)
        found, face_row, due_row = [], 0, 0
        for wanted in due:
            n, measured = len(wanted), int(wanted.sum())
            if n == 0:
                found.append(FaceAttributes.empty())
                continue
            age = np.full(n, np.nan, np.float32)
            gender = np.full((n, 2), np.nan, np.float32)
            if measured:
                age[wanted] = outputs["age"].reshape(-1)[due_row : due_row + measured]
                gender[wanted] = outputs["gender"][due_row : due_row + measured][:, gender_columns]
            found.append(FaceAttributes(outputs["emotion"][face_row : face_row + n][:, emotion_columns], age, gender))
            face_row, due_row = face_row + n, due_row + measured
        return found

    def _columns(self, head: str, ours: tuple[str, ...]) -> list[int]:
        theirs = self.client.labels(head)
        if sorted(theirs) != sorted(ours):
            raise ModelServerError(f"the model server's {head} labels {list(theirs)} are not {list(ours)}")
        return [theirs.index(label) for label in ours]


@dataclass
class _Detected:
    """A frame between detection and the models."""

    index: int | None
    image: np.ndarray
    size: tuple[int, int]  # the frame's (width, height)
    scale: float  # frame pixels per image pixel (2 for a half-size decode)
    detections: sv.Detections  # in frame pixels
    track_ids: np.ndarray  # (N,), -1: no track (image mode, or not confirmed yet)
    due: np.ndarray  # (N,) bool: age and gender measured on this frame
    timer: Timer
    detector_name: str  # whose boxes these are (face-crop rules are measured per detector); "none": the whole image
    shot_cut: bool = False  # a new shot starts here (set when tracked)
    histogram: np.ndarray | None = None  # for the shot-cut check; made on the detection thread in video mode


class FramePipeline:
    """Decode → detect → track → models → smooth for one stream, video segment or image request. Not shared
    between streams: it holds the stream's tracks."""

    def __init__(self, analyzer: FaceAnalyzer, options: PipelineOptions, run_cpu_bound: CpuBoundRunner | None = None):
        self.analyzer, self.options = analyzer, options
        self.detector = analyzer.detector
        # Live, decoding and detection hold the CPU for milliseconds without needing the GIL; the web app runs
        # them on a native thread so its event loop keeps serving other sockets meanwhile.
        self.run_cpu_bound = run_cpu_bound or run_here
        tracked = options.mode is not RunningMode.IMAGE
        self.tracker = FaceTracker(options.nominal_fps, options.track_lost_after_s) if tracked else None
        forget_after = self.tracker.lost_after_frames if self.tracker else 1
        self.smoother = AttributeSmoother(options.smoothing_new_frame_weight, forget_after_frames=forget_after)
        self.shot_cuts = (
            ShotCutDetector(options.shot_cut_threshold) if self.tracker is not None and options.shot_cut_threshold is not None else None
        )
        self.age_gender_schedule = AgeGenderSchedule(options.age_gender_every_n_frames if tracked else 1)
        self.detection_sizer = (
            DetectionSizer(options.detection_max_side_px, options.detection_min_side_px, options.detection_full_every_n_frames)
            if tracked
            else None
        )
        self.uncertain_below = analyzer.client.uncertain_below("emotion")

    # ---- single frames (image and live modes) -------------------------------------------------------------

    def process(self, data: bytes, detect: bool = True) -> FrameAnalysis:
        """One encoded frame (JPEG / PNG). Raises FrameError for data that is not an analysable image."""
        timer = Timer()
        frame = self.run_cpu_bound(lambda: self._decode_and_detect(data, timer, detect))
        return self._predict([frame])[0]

    def process_image(self, image_bgr: np.ndarray, frame_index: int | None = None) -> FrameAnalysis:
        """One decoded frame (a camera's, a video's)."""
        timer = Timer()
        frame = self.run_cpu_bound(lambda: self._detect(frame_index, image_bgr, 1.0, image_bgr.shape[1::-1], timer))
        return self._predict([frame])[0]

    # ---- every frame of a video (video mode) --------------------------------------------------------------

    def run(self, frames: Iterable[tuple[int, np.ndarray]]) -> Generator[FrameAnalysis, None, None]:
        """(index, BGR image) in order → one FrameAnalysis per frame, in order. While the models work on one
        batch of frames, the next batch is decoded, detected (a few frames ahead, on a thread of its own: the
        detector's runtime releases the GIL) and tracked. One detection thread, so frames are detected in
        order and the detection sizer sees each frame's faces before sizing the next. Closing the iterator
        early (cancel, error) stops the look-ahead."""
        if self.options.mode is not RunningMode.VIDEO:
            raise ValueError(f"run() analyses every frame of a video and needs RunningMode.VIDEO, got {self.options.mode}")
        return self._run(frames)  # not a generator itself, so misuse fails here and not at the first frame

    def _run(self, frames: Iterable[tuple[int, np.ndarray]]) -> Generator[FrameAnalysis, None, None]:
        with closing(self._detected_ahead(frames)) as detected:  # closed early too: the look-ahead stops
            yield from self._batched(detected)

    def _batched(self, detected: Iterator[_Detected]) -> Iterator[FrameAnalysis]:
        batch: list[_Detected] = []
        in_flight: tuple[list[_Detected], PendingOutputs | None] | None = None
        for frame in detected:
            batch.append(frame)
            if len(batch) == self.options.batch_frames:
                pending = self._submit(batch)
                if in_flight:
                    yield from self._collect(*in_flight)
                in_flight, batch = (batch, pending), []
        if batch:
            pending = self._submit(batch)
            if in_flight:
                yield from self._collect(*in_flight)
            in_flight = (batch, pending)
        if in_flight:
            yield from self._collect(*in_flight)

    def _collect(self, frames: list[_Detected], pending: PendingOutputs | None) -> list[FrameAnalysis]:
        started = time.perf_counter()
        outputs = pending.result() if pending else {}
        waited_ms = round((time.perf_counter() - started) * 1000 / len(frames), 2)
        for frame in frames:
            frame.timer.timings_ms["models"] = waited_ms
        return self._finish(frames, outputs)

    def _detected_ahead(self, frames: Iterable[tuple[int, np.ndarray]]) -> Generator[_Detected, None, None]:
        ahead: deque[Future[_Detected]] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="detect") as pool:
            try:
                for index, image in frames:
                    ahead.append(pool.submit(self._detect_ahead, index, image))
                    if len(ahead) > self.options.detect_ahead_frames:
                        yield self._track(ahead.popleft().result())
                while ahead:
                    yield self._track(ahead.popleft().result())
            finally:
                for future in ahead:  # stopped early (cancelled, failed): drop what was not started
                    future.cancel()

    def _detect_ahead(self, index: int, image: np.ndarray) -> _Detected:
        frame = self._detect(index, image, 1.0, image.shape[1::-1], Timer(), track=False)
        if self.shot_cuts is not None:  # per-frame CPU work, here rather than on the thread feeding the models
            frame.histogram = colour_histogram(image)
        return frame

    # ---- the stages ---------------------------------------------------------------------------------------

    def _decode_and_detect(self, data: bytes, timer: Timer, detect: bool) -> _Detected:
        """Image mode decodes at full size. Live, a detector with a fixed input size (BlazeFace: 128 px) finds
        the same faces in a half-size decode, which takes a third of the time; the face crops need the
        resolution, though: a face narrower than ``full_resolution_below_face_px`` in the frame would give a
        crop with fewer pixels than the model's input, so then the frame is decoded again at full size."""
        live = self.options.mode is RunningMode.LIVE
        limits = self.analyzer.frame_limits if live else self.analyzer.image_limits
        half_size = live and self.detector.fixed_input_side_px is not None
        with timer.stage("decode"):
            image = decode_image(data, limits, half_size=half_size)
        size = image_size(data) if half_size else (image.shape[1], image.shape[0])
        if not detect:
            whole = sv.Detections(xyxy=np.array([[0, 0, size[0], size[1]]], np.float32), confidence=np.ones(1, np.float32))
            return _Detected(None, image, size, 1.0, whole, np.full(1, -1), np.ones(1, bool), timer, "none")
        frame = self._detect(None, image, size[0] / image.shape[1], size, timer, track=False)
        if frame.scale > 1 and len(frame.detections):
            xyxy = frame.detections.xyxy
            sides = np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1])
            if sides.min() < self.analyzer.full_resolution_below_face_px():
                with timer.stage("decode"):
                    frame.image, frame.scale = decode_image(data, limits), 1.0
        return self._track(frame)

    def _detect(
        self, index: int | None, image: np.ndarray, scale: float, size: tuple[int, int], timer: Timer, track: bool = True
    ) -> _Detected:
        with timer.stage("detect"):
            detections = self.detector.detect(image, self.detection_sizer.side_for(image) if self.detection_sizer else None)
            if self.detection_sizer:
                self.detection_sizer.update(detections)
            if len(detections) > self.options.max_faces_per_frame:  # the most confident ones, in detection order
                keep = np.argsort(-_confidences(detections))[: self.options.max_faces_per_frame]
                # An index array selects a Detections (supervision's __getitem__ is typed as every kind of result).
                detections = cast(sv.Detections, detections[np.sort(keep)])
        if scale != 1 and len(detections):
            detections.xyxy = detections.xyxy * scale
            for points in ("landmarks", "keypoints"):
                if points in detections.data:
                    detections.data[points] = np.asarray(detections.data[points]) * scale
        n = len(detections)
        frame = _Detected(index, image, size, scale, detections, np.full(n, -1), np.ones(n, bool), timer, self.detector.name)
        return self._track(frame) if track else frame

    def _track(self, frame: _Detected) -> _Detected:
        if self.tracker is None:
            return frame
        with frame.timer.stage("track"):
            # In stream order (tracking is), before the tracker sees the frame's faces.
            if self.shot_cuts is not None and self.shot_cuts.update(
                frame.histogram if frame.histogram is not None else colour_histogram(frame.image)
            ):
                self.tracker.end_tracks()
                frame.shot_cut = True
            frame.track_ids = self.tracker.update(frame.detections)
            # Live, a measurement can fail (the model server down for a frame): a track without values to carry
            # over is due again. In a video, measurements of earlier frames may still be in flight, and a
            # failed one fails the segment.
            carried = self.smoother.track_ids if self.options.mode is RunningMode.LIVE else None
            frame.due = self.age_gender_schedule.due(frame.track_ids, carried=carried)
        return frame

    def _submit(self, frames: list[_Detected]) -> PendingOutputs | None:
        """One batched request per model for these frames' faces (None: no face to score)."""
        inputs = self.analyzer.model_inputs(
            [f.image for f in frames], [f.detections.xyxy / f.scale for f in frames], [f.due for f in frames], frames[0].detector_name
        )
        return self.analyzer.client.submit(inputs) if inputs else None

    def _predict(self, frames: list[_Detected]) -> list[FrameAnalysis]:
        """Single frames: crops, models and smoothing at once."""
        timer = frames[0].timer
        with timer.stage("models"):
            pending = self._submit(frames)
            outputs = pending.result() if pending else {}
        return self._finish(frames, outputs)

    def _finish(self, frames: list[_Detected], outputs: dict[str, np.ndarray]) -> list[FrameAnalysis]:
        """Model outputs → smoothed faces, frame by frame in order (the smoother is per stream, in order)."""
        found = self.analyzer.split_outputs(outputs, [f.due for f in frames]) if outputs else [FaceAttributes.empty() for _ in frames]
        analyses = []
        for frame, attributes in zip(frames, found, strict=True):
            timer = frame.timer
            with timer.stage("smooth"):
                smoothed = self.smoother.update(frame.track_ids, attributes) if self.tracker else attributes
            timer.timings_ms["total"] = round(sum(v for k, v in timer.timings_ms.items() if k != "total"), 2)
            xyxy, scores = frame.detections.xyxy, _confidences(frame.detections)
            faces = [
                Face(
                    _box(xyxy[i]),
                    float(scores[i]),
                    smoothed.emotion[i],
                    float(smoothed.age_years[i]),
                    smoothed.gender[i],
                    None if frame.track_ids[i] < 0 else int(frame.track_ids[i]),
                    self.uncertain_below,
                    attributes.emotion[i],
                )
                for i in range(len(xyxy))
            ]
            analyses.append(FrameAnalysis(faces, frame.size[0], frame.size[1], dict(timer.timings_ms), frame.index, frame.shot_cut))
        return analyses


def _confidences(detections: sv.Detections) -> np.ndarray:
    """The detector's scores: every FaceDetector gives them (supervision's Detections makes them optional)."""
    if detections.confidence is None:
        raise ValueError("the detections have no confidence scores")
    return detections.confidence


def _box(xyxy: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return x1, y1, x2, y2
