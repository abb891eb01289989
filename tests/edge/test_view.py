"""What an edge device sees now (ViewSummary, view_of): faces counted under their top expression, the dominant
one, shares; a view only when something changed, at most once per interval; nobody in view at the end."""

import numpy as np
import pytest

from emotion_detector.edge.messages import View
from emotion_detector.edge.view import ViewSummary, view_of
from emotion_detector.labels import EMOTIONS
from emotion_detector.pipeline import Face

START_MS = 1_765_000_000_000


def face(label: str, confidence: float = 0.8, track_id: int = 1) -> Face:
    emotion = np.full(len(EMOTIONS), (1 - confidence) / (len(EMOTIONS) - 1), np.float32)
    emotion[EMOTIONS.index(label)] = confidence
    return Face((10.0, 20.0, 110.0, 140.0), 0.97, emotion, 31.5, np.array([0.8, 0.2], np.float32), track_id)


@pytest.mark.parametrize(
    ("faces", "dominant", "shares"),
    [
        ([], None, {}),
        ([face("happy")], "happy", {"happy": 1.0}),
        ([face("happy"), face("sad"), face("happy")], "happy", {"happy": 0.667, "sad": 0.333}),
        # A tie goes to the expression the faces show more surely.
        ([face("sad", 0.6), face("angry", 0.9)], "angry", {"sad": 0.5, "angry": 0.5}),
        ([face("sad", 0.9), face("angry", 0.6)], "sad", {"sad": 0.5, "angry": 0.5}),
    ],
)
def test_a_view_counts_each_face_under_its_top_expression(faces: list[Face], dominant: str | None, shares: dict[str, float]):
    view = view_of("door-1", START_MS, faces)
    assert (view.faces_in_view, view.dominant_emotion) == (len(faces), dominant)
    assert view.emotion_shares == {label: shares.get(label, 0.0) for label in EMOTIONS}
    assert View.model_validate_json(view.payload()) == view


def test_the_payload_says_null_for_no_dominant_expression():
    assert b'"dominant_emotion":null' in view_of("door-1", START_MS, []).payload()


def test_a_view_comes_when_what_is_seen_changes_at_most_once_per_interval_and_nobody_at_the_end():
    views = ViewSummary("door-1", interval_s=1.0)
    frames = [
        (0, [face("happy")]),  # the first frame: always
        (500, [face("happy"), face("sad", track_id=2)]),  # changed, but too soon
        (1000, [face("happy"), face("sad", track_id=2)]),  # changed, due
        (2500, [face("happy"), face("sad", track_id=2)]),  # due, nothing changed
        (2600, [face("sad", track_id=2)]),  # changed, due (1.6 s after the last view)
        (2700, []),  # changed, too soon
    ]
    published = [(t_ms, view) for t_ms, faces in frames if (view := views.update(START_MS + t_ms, faces)) is not None]
    assert [(t_ms, v.faces_in_view, v.dominant_emotion) for t_ms, v in published] == [(0, 1, "happy"), (1000, 2, "happy"), (2600, 1, "sad")]
    end = views.finish(START_MS + 3000)
    assert end is not None and (end.faces_in_view, end.dominant_emotion, set(end.emotion_shares.values())) == (0, None, {0.0})
    assert views.finish(START_MS + 3100) is None  # nobody in view was already said


def test_the_interval_must_be_positive():
    with pytest.raises(ValueError, match="interval_s must be > 0, got 0"):
        ViewSummary("door-1", interval_s=0)
