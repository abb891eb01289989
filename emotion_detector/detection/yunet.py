"""OpenCV Zoo's YuNet, when asked for and its ONNX file is present (``python -m emotion_detector models download``).

By default its network runs on ONNX Runtime and its outputs are decoded as ``cv2.FaceDetectorYN`` does;
``runtime="opencv"`` uses ``cv2.FaceDetectorYN`` itself, and a test holds the two to the same faces.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import supervision as sv

from emotion_detector.detection.base import DetectorOptions, as_bgr, detections, detector_session, no_detections
from serving.providers import provider_in_use

# Both runners return cv2.FaceDetectorYN's row format: x, y, w, h, five (x, y) landmarks, score.
_NO_FACES = np.zeros((0, 15), np.float32)
DEFAULT_SCORE = 0.7


class YuNetDetector:
    name = "yunet"
    degraded = False
    fixed_input_side_px: int | None = None
    face_range_px = (26.0, 300.0)  # bench/detectors.py scale sweep: recall 0.97 from 26 px at its input, 0.19 at 16-20

    def __init__(self, model_path: Path, options: DetectorOptions):
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"YuNet model not found at {model_path}")
        self.model = str(model_path)
        self.options = options
        self.score_threshold = options.threshold(DEFAULT_SCORE)
        runner = _YuNetOnnxRuntime if options.yunet_runtime == "onnxruntime" else _YuNetOpenCV
        self._run = runner(self.model, self.score_threshold, options)
        self.execution_provider = self._run.execution_provider

    def detect(self, image_bgr: np.ndarray, min_score: float | None = None) -> sv.Detections:
        if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
            return no_detections()
        faces = self._run(as_bgr(image_bgr), self.score_threshold if min_score is None else min_score)
        if not len(faces):
            return no_detections()
        x, y, w, h = faces[:, 0], faces[:, 1], faces[:, 2], faces[:, 3]
        xyxy = np.clip(np.stack([x, y, x + w, y + h], axis=1), 0, [image_bgr.shape[1], image_bgr.shape[0]] * 2)
        return detections(xyxy, faces[:, 14], faces[:, 4:14])

    def detect_many(self, images_bgr: Sequence[np.ndarray], min_score: float | None = None) -> list[sv.Detections]:
        return [self.detect(image, min_score) for image in images_bgr]


class _YuNetOpenCV:
    def __init__(self, model: str, score_threshold: float, options: DetectorOptions):
        self._detector = cv2.FaceDetectorYN.create(model, "", (320, 240), score_threshold, options.nms_threshold, 5000)
        self._input_size: tuple[int, int] = (320, 240)
        self._lock = threading.Lock()  # one cv2 detector object; its input size and threshold are state
        self.execution_provider: Literal["cuda", "cpu"] = "cpu"  # OpenCV's DNN module, on its CPU backend

    def __call__(self, image_bgr: np.ndarray, min_score: float) -> np.ndarray:
        size = (image_bgr.shape[1], image_bgr.shape[0])
        with self._lock:
            if size != self._input_size:
                self._detector.setInputSize(size)
                self._input_size = size
            self._detector.setScoreThreshold(min_score)
            _, faces = self._detector.detect(image_bgr)
        return _NO_FACES if faces is None else faces


class _YuNetOnnxRuntime:
    """YuNet's network on ONNX Runtime; the decoding follows the model's published output format (2023mar and
    later): per stride 8 / 16 / 32 and grid cell, class and objectness scores, a box as the centre's offset
    in cells and log width / height, and five landmarks as offsets in cells."""

    STRIDES = (8, 16, 32)

    def __init__(self, model: str, score_threshold: float, options: DetectorOptions):
        self._session = detector_session(model, options)
        self.execution_provider = provider_in_use(self._session)
        self._input = self._session.get_inputs()[0].name
        self._outputs = [f"{kind}_{stride}" for stride in self.STRIDES for kind in ("cls", "obj", "bbox", "kps")]
        self.nms_threshold = options.nms_threshold

    def __call__(self, image_bgr: np.ndarray, min_score: float) -> np.ndarray:
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
            keep = np.flatnonzero(score >= min_score)
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
        kept = cv2.dnn.NMSBoxes(faces[:, :4].tolist(), faces[:, 14].tolist(), min_score, self.nms_threshold)
        return faces[np.asarray(kept, dtype=np.int64).ravel()]
