"""Face crops framed the way each model's training images were framed.

A detector box is not the training crop: FER2013 and UTKFace images show more (or less) of the head than a
YuNet or Haar box. Each model's ``model.json`` carries a ``CropRule`` per detector, measured by running that
detector on the training images (training/crop_calibration.py), and ``crop_faces`` applies it.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class CropRule:
    side_per_box_width: float = 1.0  # side of the square crop / box width
    center_dx_per_box_width: float = 0.0  # crop centre minus box centre, in box widths
    center_dy_per_box_height: float = 0.0  # ... in box heights (positive: lower)

    @classmethod
    def from_dict(cls, raw: dict[str, float]) -> CropRule:
        return cls(raw["side_per_box_width"], raw["center_dx_per_box_width"], raw["center_dy_per_box_height"])

    def square(self, box_xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes → (N, 4) square crop regions (may extend past the image)."""
        x1, y1, x2, y2 = box_xyxy.T
        w, h = x2 - x1, y2 - y1
        cx = (x1 + x2) / 2 + self.center_dx_per_box_width * w
        cy = (y1 + y2) / 2 + self.center_dy_per_box_height * h
        half = self.side_per_box_width * w / 2
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


def crop_faces(image_bgr: np.ndarray, boxes_xyxy: np.ndarray, rule: CropRule, size: int, grey: bool) -> np.ndarray:
    """uint8 crops (N, size, size, 1 or 3) in grey or RGB; parts outside the image repeat its edge pixels."""
    regions = rule.square(np.asarray(boxes_xyxy, np.float32).reshape(-1, 4))
    channels = 1 if grey else 3
    out = np.empty((len(regions), size, size, channels), np.uint8)
    source = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2GRAY) if grey else cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    for i, (x1, y1, x2, _) in enumerate(regions):
        scale = size / max(x2 - x1, 1e-6)
        # One affine warp crops, scales and pads in a single pass (no intermediate copy of the region).
        matrix = np.array([[scale, 0, -x1 * scale], [0, scale, -y1 * scale]], np.float32)
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        warped = cv2.warpAffine(source, matrix, (size, size), flags=interpolation, borderMode=cv2.BORDER_REPLICATE)
        out[i] = warped.reshape(size, size, channels)
    return out
