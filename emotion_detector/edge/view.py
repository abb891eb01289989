"""What an edge device sees now (``emotion-detector/{device_id}/view``, a retained ``View``) from the analysed
frames of one run: a pure unit, no I/O.

views = ViewSummary("door-1", interval_s=1.0)
for timestamp_ms, faces in analysed_frames:
    if (view := views.update(timestamp_ms, faces)) is not None:
        publish(view)
publish(views.finish(timestamp_ms))
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from emotion_detector.edge.messages import View
from emotion_detector.labels import EMOTIONS
from emotion_detector.pipeline import Face

SHARE_DECIMALS = 3  # 0.1 %: finer changes are noise, and would publish a new retained view for nothing


def view_of(device_id: str, timestamp_ms: int, faces: Sequence[Face]) -> View:
    """The view of one frame: how many faces, the most frequent top expression (a tie goes to the expression
    with the larger summed probability), and each expression's share of the faces."""
    labels = Counter(face.emotion_label for face in faces)
    dominant = None
    if labels:
        summed = {label: sum(float(face.emotion_probabilities[EMOTIONS.index(label)]) for face in faces) for label in labels}
        dominant = max(labels, key=lambda label: (labels[label], summed[label]))
    shares = {label: round(labels[label] / len(faces), SHARE_DECIMALS) if faces else 0.0 for label in EMOTIONS}
    return View(device_id=device_id, timestamp_ms=timestamp_ms, faces_in_view=len(faces), dominant_emotion=dominant, emotion_shares=shares)


class ViewSummary:
    """Turns analysed frames into views: one when what is seen has changed (the number of faces, the dominant
    expression or a share), at most one per ``interval_s``; the first frame always gives one."""

    def __init__(self, device_id: str, interval_s: float = 1.0):
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.device_id = device_id
        self.interval_ms = round(interval_s * 1000)
        self._last: View | None = None

    def update(self, timestamp_ms: int, faces: Sequence[Face]) -> View | None:
        """One analysed frame (``timestamp_ms``: its wall clock) → a view to publish, or None (nothing new, or
        the last one is too recent)."""
        if self._last is not None and timestamp_ms - self._last.timestamp_ms < self.interval_ms:
            return None
        view = view_of(self.device_id, timestamp_ms, faces)
        if self._last is not None and _same_sight(view, self._last):
            return None
        self._last = view
        return view

    def finish(self, timestamp_ms: int) -> View | None:
        """The source ended: nobody is in view any more (None: that was already the last view published)."""
        view = view_of(self.device_id, timestamp_ms, [])
        if self._last is not None and _same_sight(view, self._last):
            return None
        self._last = view
        return view


def _same_sight(a: View, b: View) -> bool:
    return (a.faces_in_view, a.dominant_emotion, a.emotion_shares) == (b.faces_in_view, b.dominant_emotion, b.emotion_shares)
