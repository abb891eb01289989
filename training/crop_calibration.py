"""Measure how a detector's boxes sit on a dataset's face images, so live crops can match training crops.

Each training image is enlarged and padded (so the face is not at the border, where detectors fail), the
detector finds the face, and the image square is expressed relative to the box. The median over many images
is the ``CropRule`` written into model.json by the export.
"""

from __future__ import annotations

from collections.abc import Iterable

import cv2
import numpy as np

from emotion_detector.crops import CropRule
from emotion_detector.detection import FaceDetector


def calibrate(images_bgr: Iterable[np.ndarray], detector: FaceDetector, side_px: int = 144) -> tuple[CropRule, int]:
    """Returns the median rule and how many images it was measured on (those where a face was found)."""
    measured = []
    for image in images_bgr:
        enlarged = cv2.resize(image, (side_px, side_px), interpolation=cv2.INTER_CUBIC)
        pad = side_px // 2
        canvas = cv2.copyMakeBorder(enlarged, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        detections = detector.detect(canvas)
        if len(detections) == 0:
            continue
        x1, y1, x2, y2 = detections.xyxy[int(np.argmax(detections.confidence))] - pad
        w, h = x2 - x1, y2 - y1
        measured.append((side_px / w, (side_px / 2 - (x1 + x2) / 2) / w, (side_px / 2 - (y1 + y2) / 2) / h))
    if not measured:
        raise RuntimeError(f"{detector.name} found no face in the calibration images")
    side, dx, dy = np.median(np.array(measured), axis=0)
    return CropRule(round(float(side), 3), round(float(dx), 3), round(float(dy), 3)), len(measured)
