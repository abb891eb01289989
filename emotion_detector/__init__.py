"""Emotion Detector: face detection, tracking and expression / age / gender analysis.

from emotion_detector import analyze
for record in analyze("clip.mp4"):
    print(record.to_json())
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from emotion_detector.analyze_api import analyze

__all__ = ["analyze"]


def __getattr__(name: str) -> Any:
    # Nothing heavy at import time: the models and OpenCV load when ``analyze`` is first used.
    if name == "analyze":
        from emotion_detector.analyze_api import analyze

        return analyze
    raise AttributeError(f"module 'emotion_detector' has no attribute {name!r}")
