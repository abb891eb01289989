"""One frame pipeline behind every running mode (web live, image API, video segments, and the CLI and edge
modes), one typed object between its stages:

    frame ─decode─► BGR array ─detect─► sv.Detections (capped) ─track─► track ids ─models─► FaceAttributes
          ─smooth─► per-track averages ─► FrameAnalysis (faces: the JSON of DESIGN.md §2)

Detection (emotion_detector.detection) finds faces from ``detection_min_face_px`` high to the whole picture:
a whole-picture search in image mode; in the tracked modes a search now and then and, in between, a look
around the faces already known (detection/schedule.py). Tracked modes also look for shot cuts (shots.py)
before detecting: a cut ends every track, so no identity carries across it, the video mode searches the
whole picture again, and the frame is marked (``FrameAnalysis.shot_cut``).

``FramePipeline`` is built from ``PipelineOptions`` with an explicit ``RunningMode``:

- ``IMAGE``: independent pictures; no tracking, no smoothing, every face measured.
- ``LIVE``: a stream taken one frame at a time as it comes; the caller drops frames that queue up while one
  is processed (newest wins), so nothing queues unboundedly. Whole-picture searches after the first run in
  the background, so no answer waits for one.
- ``VIDEO``: every frame of a file, in order; detection runs a few frames ahead on a thread of its own and
  the models get one batched request per few frames, while the next frames are decoded and detected.

Live and video share every rule: the face cap, the track-lost time, one age / gender carry-over
(``AgeGenderSchedule`` + ``AttributeSmoother``) and one smoothing rule (an exponential moving average per
track), so the live overlay, a video's timeline, its statistics and its annotated video show the same label
for the same face and frame.
"""

from __future__ import annotations

import functools
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol, TypeVar, cast

import numpy as np
import supervision as sv

from emotion_detector.crops import crop_faces, roll_degrees
from emotion_detector.detection import BackgroundSearches, FaceDetector, FaceSearch, LiveDetection, SearchOptions, VideoDetection
from emotion_detector.face_models import FaceModels, PendingOutputs
from emotion_detector.frames import ImageLimits, decode_image
from emotion_detector.labels import EMOTIONS, GENDERS
from emotion_detector.model_client import ModelServerError
from emotion_detector.schemas import AgeResult, DetectionInfo, EmotionResult, FaceResult, GenderResult, ImageAnalysis, no_faces_message
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
    detection: DetectionInfo | None = None  # which detector looked and from which face size (None: not detected)

    @property
    def video_frame_index(self) -> int:
        """``frame_index``, for a frame analysed as part of a video (the video mode always sets it)."""
        if self.frame_index is None:
            raise ValueError("this frame was not analysed as a frame of a video: it has no frame index")
        return self.frame_index

    def to_schema(self) -> ImageAnalysis:
        return ImageAnalysis(
            faces=[face.to_schema() for face in self.faces],
            width=self.width,
            height=self.height,
            timing_ms=self.timing_ms,
            detection=self.detection,
            message=no_faces_message(self.detection.min_face_px) if self.detection and not self.faces else None,
        )

    def to_json(self) -> dict[str, Any]:
        return self.to_schema().to_json()


@dataclass(frozen=True)
class PipelineOptions:
    mode: RunningMode
    nominal_fps: float = 10.0  # frames per second that reach the pipeline (a video's: its fps / every n-th)
    max_faces_per_frame: int = 64  # the most confident ones are kept
    track_lost_after_s: float = 1.0  # a face unseen this long ends its track
    smoothing_new_frame_weight: float = 0.35  # 1: no smoothing
    age_gender_every_n_frames: int = 5  # a tracked face's age and gender are measured on every n-th frame
    # Tracked modes: a whole-picture search at most this often (video: every this many seconds of the video, and
    # after each cut; live: in the background); in between, faces are looked for around the known ones.
    search_every_s: float = 1.0
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
                ("search_every_s", self.search_every_s, self.search_every_s > 0, "> 0"),
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
            search_every_s=settings.detection_search_every_s,
            shot_cut_threshold=settings.shot_cut_threshold,
        )


class FaceAnalyzer:
    """What every pipeline shares and nothing per stream: the detector and its search, the models, the input
    limits, and the one thread (with its budget) that runs live streams' background searches. Built once per
    process; ``pipeline(options)`` makes a pipeline per stream, video segment or request."""

    def __init__(
        self,
        detector: FaceDetector,
        models: FaceModels,
        settings: Settings,
        background: Executor | None = None,
        live_searches_in_background: bool = True,
    ):
        """``background``: the executor live streams' searches run on (default: one thread of this process's own,
        started on first use; the web app passes one of native threads under gevent). Without
        ``live_searches_in_background`` live streams search in line, when due (the same frames, the same faces)."""
        self.detector = detector
        self.search = FaceSearch(detector, SearchOptions.from_settings(settings))
        self.client = models
        self.settings = settings
        self.frame_limits = ImageLimits(settings.max_frame_bytes, settings.max_image_pixels, settings.max_image_side_px)
        self.image_limits = ImageLimits(settings.max_image_bytes, settings.max_image_pixels, settings.max_image_side_px)
        self._executor = background
        self.live_searches_in_background = live_searches_in_background

    @functools.cached_property
    def background(self) -> BackgroundSearches:
        executor = self._executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-search")
        return BackgroundSearches(executor, self.settings.detection_background_busy_share)

    def detection_info(self, width: int, height: int) -> DetectionInfo:
        return DetectionInfo(detector=self.detector.name, min_face_px=round(self.search.min_face_px_for(width, height), 1))

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

    def model_inputs(
        self, images: list[np.ndarray], faces: list[sv.Detections], due: list[np.ndarray], detector_name: str
    ) -> dict[str, np.ndarray]:
        """One batch per model over several frames: every face's crop for the expression model, the crops of
        faces due for age and gender (see AgeGenderSchedule) for theirs, each turned upright by its eye line."""
        boxes = [found.xyxy for found in faces]
        rolls = [roll_degrees(np.asarray(found.data["landmarks"]) if "landmarks" in found.data else None, len(found)) for found in faces]
        inputs: dict[str, np.ndarray] = {}
        for name, spec in self.client.specs().items():
            rule = spec.crop_rule(detector_name)
            crops = [
                crop_faces(image, b if spec.every_face else b[d], rule, spec.size, spec.grey, r if spec.every_face else r[d])
                for image, b, r, d in zip(images, boxes, rolls, due, strict=True)
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
    detections: sv.Detections  # in the frame's pixels
    track_ids: np.ndarray  # (N,), -1: no track (image mode, or not confirmed yet)
    due: np.ndarray  # (N,) bool: age and gender measured on this frame
    timer: Timer
    detector_name: str  # whose boxes these are (face-crop rules are measured per detector); "none": the whole image
    detection: DetectionInfo | None  # None: the whole image taken as one face
    shot_cut: bool = False  # a new shot starts here (set when tracked)

    @property
    def size(self) -> tuple[int, int]:
        """The frame's (width, height)."""
        return self.image.shape[1], self.image.shape[0]


class FramePipeline:
    """Decode → detect → track → models → smooth for one stream, video segment or image request. Not shared
    between streams: it holds the stream's tracks."""

    def __init__(
        self,
        analyzer: FaceAnalyzer,
        options: PipelineOptions,
        run_cpu_bound: CpuBoundRunner | None = None,
    ):
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
        self.detection: VideoDetection | LiveDetection | None = None
        if options.mode is RunningMode.VIDEO:
            self.detection = VideoDetection(analyzer.search, max(1, round(options.search_every_s * options.nominal_fps)))
        elif options.mode is RunningMode.LIVE:
            background = analyzer.background if analyzer.live_searches_in_background else None
            self.detection = LiveDetection(analyzer.search, options.search_every_s, background)
        self.uncertain_below = analyzer.client.uncertain_below("emotion")

    # ---- single frames (image and live modes) -------------------------------------------------------------

    def process(self, data: bytes, detect: bool = True) -> FrameAnalysis:
        """One encoded frame (JPEG / PNG). Raises FrameError for data that is not an analysable image."""
        timer = Timer()
        frame = self.run_cpu_bound(lambda: self._decode_and_detect(data, timer, detect))
        self._tend_background(frame)
        return self._predict([frame])[0]

    def process_image(self, image_bgr: np.ndarray, frame_index: int | None = None) -> FrameAnalysis:
        """One decoded frame (a camera's, a video's)."""
        timer = Timer()
        frame = self.run_cpu_bound(lambda: self._track(self._detect(frame_index, image_bgr, timer)))
        self._tend_background(frame)
        return self._predict([frame])[0]

    def _tend_background(self, frame: _Detected) -> None:
        """Live: on this (the caller's) thread, not the CPU runner's, collect and start background searches."""
        if isinstance(self.detection, LiveDetection) and frame.detection is not None:
            self.detection.tend(frame.image)

    # ---- every frame of a video (video mode) --------------------------------------------------------------

    def run(self, frames: Iterable[tuple[int, np.ndarray]]) -> Generator[FrameAnalysis, None, None]:
        """(index, BGR image) in order → one FrameAnalysis per frame, in order. While the models work on one
        batch of frames, the next batch is decoded, detected (a few frames ahead, on a thread of its own: the
        detector's runtime releases the GIL) and tracked. One detection thread, so frames are detected in
        order: the detection schedule looks around each frame's faces in the next. Closing the iterator
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
                    ahead.append(pool.submit(self._detect, index, image, Timer()))
                    if len(ahead) > self.options.detect_ahead_frames:
                        yield self._track(ahead.popleft().result())
                while ahead:
                    yield self._track(ahead.popleft().result())
            finally:
                for future in ahead:  # stopped early (cancelled, failed): drop what was not started
                    future.cancel()

    # ---- the stages ---------------------------------------------------------------------------------------

    def _decode_and_detect(self, data: bytes, timer: Timer, detect: bool) -> _Detected:
        live = self.options.mode is RunningMode.LIVE
        with timer.stage("decode"):
            image = decode_image(data, self.analyzer.frame_limits if live else self.analyzer.image_limits)
        if not detect:
            whole = sv.Detections(xyxy=np.array([[0, 0, image.shape[1], image.shape[0]]], np.float32), confidence=np.ones(1, np.float32))
            return _Detected(None, image, whole, np.full(1, -1), np.ones(1, bool), timer, "none", None)
        return self._track(self._detect(None, image, timer))

    def _detect(self, index: int | None, image: np.ndarray, timer: Timer) -> _Detected:
        """Detection in stream order (video mode: on the detection thread), shot cuts first: a cut calls for a
        whole-picture search in a video."""
        with timer.stage("detect"):
            # In stream order (the cut detector compares each frame with the one before), before detection.
            shot_cut = self.shot_cuts is not None and self.shot_cuts.update(colour_histogram(image))
            detections = self.detection.detect(image, shot_cut) if self.detection else self.analyzer.search.find(image)
            if len(detections) > self.options.max_faces_per_frame:  # the most confident ones, in detection order
                keep = np.argsort(-_confidences(detections))[: self.options.max_faces_per_frame]
                # An index array selects a Detections (supervision's __getitem__ is typed as every kind of result).
                detections = cast(sv.Detections, detections[np.sort(keep)])
        n = len(detections)
        info = self.analyzer.detection_info(image.shape[1], image.shape[0])
        return _Detected(index, image, detections, np.full(n, -1), np.ones(n, bool), timer, self.detector.name, info, shot_cut)

    def _track(self, frame: _Detected) -> _Detected:
        if self.tracker is None:
            return frame
        with frame.timer.stage("track"):
            if frame.shot_cut:
                self.tracker.end_tracks()
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
            [f.image for f in frames], [f.detections for f in frames], [f.due for f in frames], frames[0].detector_name
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
            analyses.append(
                FrameAnalysis(faces, frame.size[0], frame.size[1], dict(timer.timings_ms), frame.index, frame.shot_cut, frame.detection)
            )
        return analyses


def _confidences(detections: sv.Detections) -> np.ndarray:
    """The detector's scores: every FaceDetector gives them (supervision's Detections makes them optional)."""
    if detections.confidence is None:
        raise ValueError("the detections have no confidence scores")
    return detections.confidence


def _box(xyxy: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in xyxy)
    return x1, y1, x2, y2
