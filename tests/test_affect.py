"""Valence and arousal derived from expression probabilities (affect.py): the circumplex points and the
probability-weighted sum."""

from __future__ import annotations

import numpy as np
import pytest

from emotion_detector.affect import CIRCUMPLEX_ANGLE_DEG, COORDINATES, valence_arousal
from emotion_detector.labels import EMOTIONS


def one_hot(label: str) -> np.ndarray:
    return np.array([1.0 if e == label else 0.0 for e in EMOTIONS])


@pytest.mark.parametrize(
    ("label", "valence_sign", "arousal_sign"),
    [
        ("happy", 1, 1),  # pleasant, a little aroused (7.8°)
        ("surprise", 1, 1),  # aroused, mildly pleasant (69.8°)
        ("angry", -1, 1),  # aroused, slightly unpleasant (99°)
        ("fear", -1, 1),
        ("disgust", -1, 1),
        ("sad", -1, -1),  # unpleasant, low arousal (207.5°)
        ("neutral", 0, 0),
    ],
)
def test_each_expression_sits_in_its_quadrant_of_the_circumplex(label, valence_sign, arousal_sign):
    valence, arousal = valence_arousal(one_hot(label))
    assert np.sign(round(valence, 3)) == valence_sign and np.sign(round(arousal, 3)) == arousal_sign


def test_every_class_has_a_point_on_the_unit_circle_or_the_centre():
    assert set(CIRCUMPLEX_ANGLE_DEG) == set(EMOTIONS)
    radii = np.hypot(COORDINATES[:, 0], COORDINATES[:, 1])
    np.testing.assert_allclose(radii[[e != "neutral" for e in EMOTIONS]], 1.0, atol=1e-3)
    assert radii[EMOTIONS.index("neutral")] == 0.0


def test_the_point_is_the_probability_weighted_sum():
    probabilities = 0.5 * one_hot("happy") + 0.5 * one_hot("sad")
    expected = 0.5 * COORDINATES[EMOTIONS.index("happy")] + 0.5 * COORDINATES[EMOTIONS.index("sad")]
    np.testing.assert_allclose(valence_arousal(probabilities), expected)
    # Opposed expressions at equal odds land near the centre; a batch keeps its leading shape.
    assert abs(valence_arousal(probabilities)[0]) < 0.1
    batch = np.stack([one_hot("happy"), one_hot("sad"), probabilities])
    assert valence_arousal(batch).shape == (3, 2)
    assert np.all(np.abs(valence_arousal(np.random.default_rng(0).dirichlet(np.ones(7), size=100))) <= 1)


def test_probabilities_of_other_labels_are_refused():
    with pytest.raises(ValueError, match=r"probabilities must be \(\.\.\., 7\), got \(8,\)"):
        valence_arousal(np.ones(8) / 8)
