"""Crop rules place the square crop where the model's training images were framed."""

from __future__ import annotations

import numpy as np

from emotion_detector.crops import CropRule, crop_faces


def test_square_region_from_rule():
    rule = CropRule(side_per_box_width=1.2, center_dx_per_box_width=0.0, center_dy_per_box_height=0.1)
    (region,) = rule.square(np.array([[100, 100, 200, 220]], np.float32))
    np.testing.assert_allclose(region, [90, 112, 210, 232])  # side 120, centre (150, 160 + 12)


def test_crop_scales_pads_and_converts():
    image = np.zeros((100, 100, 3), np.uint8)
    image[40:60, 40:60] = (0, 0, 255)  # a red square (BGR) in the middle
    (rgb,) = crop_faces(image, np.array([[40, 40, 60, 60]]), CropRule(), size=20, grey=False)
    assert rgb.shape == (20, 20, 3)
    assert (rgb[5:15, 5:15] == (255, 0, 0)).all()  # RGB order
    (grey,) = crop_faces(image, np.array([[-20, -20, 20, 20]]), CropRule(), size=8, grey=True)
    assert grey.shape == (8, 8, 1) and (grey == 0).all()  # outside the image: edge pixels repeated
