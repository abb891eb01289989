"""Valence and arousal *derived from the expression probabilities* on a circumplex mapping: each expression
class has a fixed point (valence, arousal) in [-1, 1]², and a face's point is the probability-weighted sum of
them. No model measures valence or arousal here; pages and exports label these values "derived from
expressions".

The points lie on the unit circle at the angles of Russell's circumplex (J. A. Russell, "A circumplex model
of affect", Journal of Personality and Social Psychology 39(6), 1161–1178, 1980; the angles of the direct
circular scaling of 28 affect words, measured counter-clockwise from the pleasure axis): happy 7.8°,
surprise ("astonished") 69.8°, angry 99.0°, fear ("afraid") 116.9°, sad 207.5°. Russell's 28 words have no
word for disgust; it is placed at "annoyed" (123.0°), the unpleasant, moderately aroused word nearest to it,
which is our assumption, not Russell's. Neutral is the origin. A face the model is unsure about (probability
spread over opposed classes) lands near the centre, as it should.
"""

from __future__ import annotations

import math

import numpy as np

from emotion_detector.labels import EMOTIONS

CIRCUMPLEX_ANGLE_DEG: dict[str, float | None] = {  # None: the centre (no affect)
    "angry": 99.0,
    "disgust": 123.0,
    "fear": 116.9,
    "happy": 7.8,
    "sad": 207.5,
    "surprise": 69.8,
    "neutral": None,
}


def _point(angle_deg: float | None) -> tuple[float, float]:
    if angle_deg is None:
        return 0.0, 0.0
    radians = math.radians(angle_deg)
    return round(math.cos(radians), 4), round(math.sin(radians), 4)


# (7, 2): each expression's (valence, arousal), rows in EMOTIONS order.
COORDINATES = np.array([_point(CIRCUMPLEX_ANGLE_DEG[label]) for label in EMOTIONS], dtype=np.float64)


def valence_arousal(probabilities: np.ndarray) -> np.ndarray:
    """(..., 7) expression probabilities in EMOTIONS order → (..., 2) valence and arousal in [-1, 1]."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if probabilities.shape[-1] != len(EMOTIONS):
        raise ValueError(f"probabilities must be (..., {len(EMOTIONS)}), got {probabilities.shape}")
    return np.clip(probabilities @ COORDINATES, -1.0, 1.0)
