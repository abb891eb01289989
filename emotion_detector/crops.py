"""Face crops framed the way each model's training images were framed.

A detector box is not the training crop: FER2013 and UTKFace images show more (or less) of the head than a
YuNet or Haar box. Each model's ``model.json`` carries a ``CropRule`` per detector (its schema is in
serving/protocol/model_info.py), measured by running that detector on the training images
(training/crop_calibration.py), and ``crop_faces`` applies it.

The training faces are upright (FER2013 and UTKFace are aligned), so a tilted head is turned upright around
the crop's centre by the angle of its eye line (``roll_degrees``, from the detector's landmarks) before the
models see it: on head-pose-face-detection-female-and-male.mp4 a man tilting his head 30 degrees was read as a
woman in 12 of 14 sampled frames upright, and as a man in all 14 aligned.
"""

from __future__ import annotations

import cv2
import numpy as np

from serving.protocol.model_info import CropRule  # part of the model.json schema

MAX_ROLL_DEGREES = 60.0  # beyond this the eye line is more likely a landmark gone wrong than a head


def roll_degrees(landmarks: np.ndarray | None, count: int) -> np.ndarray:
    """(N, 5, 2) detector landmarks (right eye, left eye, ...; see detection/base.py) → (N,) the eye line's angle
    from horizontal, clockwise in the image; 0 where a detector gives no eyes (Haar) or none are given."""
    if landmarks is None or len(landmarks) != count:
        return np.zeros(count, np.float32)
    right_eye, left_eye = landmarks[:, 0], landmarks[:, 1]
    roll = np.degrees(np.arctan2(left_eye[:, 1] - right_eye[:, 1], left_eye[:, 0] - right_eye[:, 0]))
    clipped: np.ndarray = np.clip(np.nan_to_num(roll, nan=0.0), -MAX_ROLL_DEGREES, MAX_ROLL_DEGREES).astype(np.float32)
    return clipped


def crop_faces(
    image_bgr: np.ndarray, boxes_xyxy: np.ndarray, rule: CropRule, size: int, grey: bool, roll_deg: np.ndarray | None = None
) -> np.ndarray:
    """uint8 crops (N, size, size, 1 or 3) in grey or RGB, each turned upright by its ``roll_deg`` (default 0);
    parts outside the image repeat its edge pixels."""
    regions = rule.square(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4))
    rolls = np.zeros(len(regions), np.float32) if roll_deg is None else np.asarray(roll_deg, np.float32).reshape(-1)
    channels = 1 if grey else 3
    out = np.empty((len(regions), size, size, channels), np.uint8)
    source = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if grey else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    for i, ((x1, y1, x2, y2), roll) in enumerate(zip(regions, rolls, strict=True)):
        scale = size / max(x2 - x1, 1e-6)
        # One affine warp turns, crops, scales and pads in a single pass (no intermediate copy of the region):
        # about the region's centre, which lands on the crop's centre.
        centre = ((x1 + x2) / 2, (y1 + y2) / 2)
        matrix = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(roll), float(scale))
        matrix[:, 2] += (size / 2 - centre[0], size / 2 - centre[1])
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        warped = cv2.warpAffine(source, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
        out[i] = warped.reshape(size, size, channels)
    return out
