"""Face detection: networks behind one interface (base.py, one module each, registry.py), where and at which
scale they look (search.py), and which look each frame of a stream gets (schedule.py)."""

from emotion_detector.detection.base import DetectorKind, DetectorOptions, FaceDetector, nose_along_eyes
from emotion_detector.detection.registry import DETECTORS, create_detector
from emotion_detector.detection.schedule import BackgroundSearches, LiveDetection, VideoDetection
from emotion_detector.detection.search import FaceSearch, SearchOptions, SearchPlan

__all__ = [
    "DETECTORS",
    "BackgroundSearches",
    "DetectorKind",
    "DetectorOptions",
    "FaceDetector",
    "FaceSearch",
    "LiveDetection",
    "SearchOptions",
    "SearchPlan",
    "VideoDetection",
    "create_detector",
    "nose_along_eyes",
]
