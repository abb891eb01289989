"""Crop rules place the square crop where the model's training images were framed."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion_detector.crops import MAX_ROLL_DEGREES, CropRule, crop_faces, roll_degrees


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


def eyes_and_bar(angle_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """A 200 px picture with two "eyes" and a "mouth" bar, turned by angle_deg about its centre, and the eyes'
    landmarks (right eye first: the one on the image's left) turned with it."""
    image = np.zeros((200, 200), np.uint8)
    for x in (80, 120):
        cv2.circle(image, (x, 90), 6, 255, -1)
    cv2.rectangle(image, (80, 125), (120, 131), 255, -1)
    turn = cv2.getRotationMatrix2D((100.0, 100.0), angle_deg, 1.0)
    landmarks = np.full((1, 5, 2), np.nan, np.float32)
    landmarks[0, :2] = cv2.transform(np.array([[[80, 90], [120, 90]]], np.float32), turn)[0]
    return cv2.cvtColor(cv2.warpAffine(image, turn, (200, 200)), cv2.COLOR_GRAY2BGR), landmarks


@pytest.mark.parametrize("angle_deg", [-35.0, 20.0])
def test_a_tilted_face_is_cropped_upright_by_its_eye_line(angle_deg):
    box = np.array([[60, 60, 140, 140]], np.float32)
    (upright,) = crop_faces(eyes_and_bar(0.0)[0], box, CropRule(), size=48, grey=True)
    tilted, landmarks = eyes_and_bar(angle_deg)
    roll = roll_degrees(landmarks, 1)
    assert roll[0] == pytest.approx(-angle_deg, abs=0.5)  # cv2 turns counter-clockwise; the eye line leans the other way
    (aligned,) = crop_faces(tilted, box, CropRule(), size=48, grey=True, roll_deg=roll)
    (as_boxed,) = crop_faces(tilted, box, CropRule(), size=48, grey=True)
    aligned_off, as_boxed_off = (float(np.abs(crop.astype(int) - upright.astype(int)).mean()) for crop in (aligned, as_boxed))
    assert aligned_off < 8 < 24 < as_boxed_off


def test_no_eyes_no_turn_and_a_wild_eye_line_is_capped():
    assert roll_degrees(None, 2).tolist() == [0.0, 0.0]  # e.g. the Haar cascade: no landmarks
    assert roll_degrees(np.full((1, 5, 2), np.nan, np.float32), 1).tolist() == [0.0]
    upside_down = np.array([[[120, 90], [80, 10], [0, 0], [0, 0], [0, 0]]], np.float32)
    assert abs(roll_degrees(upside_down, 1)[0]) == MAX_ROLL_DEGREES
