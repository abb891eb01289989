"""What every face detector network gives, and the options they share.

A ``FaceDetector`` is one network and its decoding: ``detect(image_bgr) -> sv.Detections`` runs it on the picture
exactly as given (a fixed-size network letterboxes it into its square input) and returns boxes in that picture's
pixels, a score per face and ``data["landmarks"]``: (N, 5, 2) points in YuNet's order (right eye, left eye, nose
tip, right mouth corner, left mouth corner; "right" is the person's, on the image's left), NaN where a network
has no such point. Where to look, and at which scale, is ``FaceSearch``'s job (search.py): it turns each
network's measured face range into a pyramid of tiles over a whole picture, or regions around known faces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
import onnxruntime as ort
import supervision as sv

from serving.providers import ExecutionPreference, inference_session

if TYPE_CHECKING:
    from emotion_detector.settings import Settings

DetectorKind = Literal["auto", "centerface", "blazeface", "blazeface_full_range", "yunet", "haar"]


class FaceDetector(Protocol):
    name: str  # "centerface" | "blazeface" | "blazeface_full_range" | "yunet" | "haar": keys the face-crop rules
    score_threshold: float  # faces scoring less are not reported (unless a call asks for a lower min_score)
    model: str  # the model file in use
    degraded: bool  # True for the Haar cascade, the last resort: it misses faces and finds false ones
    execution_provider: Literal["cuda", "cpu"]  # what runs the network (serving/providers.py)
    fixed_input_side_px: int | None  # the network sees a square of this side (BlazeFace); None: any size
    # The face heights (pixels of the network's input) it finds reliably: FaceSearch scales pictures into this
    # range. Measured on the scale sweep of bench/detectors.py (recall >= 0.9 at the lower end).
    face_range_px: tuple[float, float]

    def detect(self, image_bgr: np.ndarray, min_score: float | None = None) -> sv.Detections:
        """Faces scoring at least ``min_score`` (default: ``score_threshold``)."""
        ...

    def detect_many(self, images_bgr: Sequence[np.ndarray], min_score: float | None = None) -> list[sv.Detections]:
        """Several pictures of one size (regions around faces): one batched run where the network allows it."""
        ...


@dataclass(frozen=True)
class DetectorOptions:
    kind: DetectorKind = "auto"
    cache_dir: Path | None = None  # where translated / cleaned ONNX graphs are kept (None: in memory only)
    yunet_path: Path | None = None
    yunet_runtime: Literal["onnxruntime", "opencv"] = "onnxruntime"
    threads: int = 1  # ONNX Runtime threads per network; one leaves the other core to the models
    score_threshold: float | None = None  # None: each network's own, chosen on the benchmark (0 false faces on no-face media)
    nms_threshold: float = 0.3
    execution_provider: ExecutionPreference = "auto"  # a GPU when ONNX Runtime has one (serving/providers.py)

    @classmethod
    def from_settings(cls, settings: Settings, default_threads: int | None = None) -> DetectorOptions:
        """``default_threads``: when the settings name none (default: up to 2, one stream per process)."""
        threads = settings.detection_threads or default_threads or min(2, os.cpu_count() or 1)
        return cls(
            kind=settings.detector,
            cache_dir=settings.model_cache_dir,
            yunet_path=settings.yunet_path,
            yunet_runtime=settings.yunet_runtime,
            threads=threads,
            score_threshold=settings.detection_score_threshold,
            execution_provider=settings.execution_provider,
        )

    def threshold(self, default: float) -> float:
        return default if self.score_threshold is None else self.score_threshold


def detector_session(model: str | bytes, options: DetectorOptions) -> ort.InferenceSession:
    return inference_session(model, session_options(options.threads), options.execution_provider)


def session_options(threads: int) -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # share the cores, don't spin
    return options


def detections(xyxy: np.ndarray, score: np.ndarray, landmarks: np.ndarray) -> sv.Detections:
    return sv.Detections(
        xyxy=np.asarray(xyxy, np.float32).reshape(-1, 4),
        confidence=np.asarray(score, np.float32).reshape(-1),
        data={"landmarks": np.asarray(landmarks, np.float32).reshape(-1, 5, 2)},
    )


def no_detections() -> sv.Detections:
    return detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 5, 2)))


def nose_along_eyes(landmarks: np.ndarray) -> np.ndarray:
    """(N, 5, 2) YuNet landmarks (right eye, left eye, nose, mouth corners) → where the nose projects on the
    line between the eyes: 0 and 1 at the eyes, 0.5 for a frontal face, whatever the head's roll."""
    eye_a, eye_b, nose = landmarks[:, 0], landmarks[:, 1], landmarks[:, 2]
    axis = eye_b - eye_a
    along: np.ndarray = np.einsum("ij,ij->i", nose - eye_a, axis) / np.maximum(np.einsum("ij,ij->i", axis, axis), 1e-6)
    return along


def as_bgr(image: np.ndarray) -> np.ndarray:
    """3-channel BGR from grey or BGRA (decoded pictures may be either)."""
    import cv2

    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image
