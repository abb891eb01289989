"""OpenCV's frontal-face Haar cascade, bundled with ``opencv-python-headless<5``: always there, the last resort
(``degraded``: it misses turned faces and finds false ones). Landmarks all NaN."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import supervision as sv

from emotion_detector.detection.base import DetectorOptions, detections, no_detections

HAAR_CASCADE = "haarcascade_frontalface_default.xml"
DEFAULT_SCORE = 0.7


class HaarDetector:
    name = "haar"
    degraded = True
    execution_provider: Literal["cuda", "cpu"] = "cpu"
    fixed_input_side_px: int | None = None
    face_range_px = (24.0, 2000.0)  # its smallest window is 24 px; it scans every larger scale itself

    def __init__(self, options: DetectorOptions):
        self.model = str(Path(cv2.data.haarcascades) / HAAR_CASCADE)  # type: ignore[attr-defined]  # missing from OpenCV's stubs
        self.options = options
        self.score_threshold = options.threshold(DEFAULT_SCORE)
        self._cascade = cv2.CascadeClassifier(self.model)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {self.model}")
        self._lock = threading.Lock()  # the web app detects on several threads; one cascade object is not shared safely

    def detect(self, image_bgr: np.ndarray, min_score: float | None = None) -> sv.Detections:
        if image_bgr.shape[0] == 0 or image_bgr.shape[1] == 0:
            return no_detections()
        grey = cv2.equalizeHist(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if image_bgr.ndim == 3 else image_bgr)
        side = int(self.face_range_px[0])
        with self._lock:
            boxes, _, level_weights = self._cascade.detectMultiScale3(grey, 1.1, 5, minSize=(side, side), outputRejectLevels=True)
        if len(boxes) == 0:
            return no_detections()
        # The cascade's final-stage weight is an unbounded margin: faces in our test photos score 5-10,
        # look-alikes (collars, hands) 1.5-2. sigma(weight - 3) turns it into a score on YuNet's scale.
        score = 1 / (1 + np.exp(3 - np.asarray(level_weights, np.float32).ravel()))
        keep = score >= (self.score_threshold if min_score is None else min_score)
        if not keep.any():
            return no_detections()
        xywh, score = np.asarray(boxes, np.float32)[keep], score[keep]
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        return detections(xyxy, score, np.full((len(xywh), 5, 2), np.nan))

    def detect_many(self, images_bgr: Sequence[np.ndarray], min_score: float | None = None) -> list[sv.Detections]:
        return [self.detect(image, min_score) for image in images_bgr]
