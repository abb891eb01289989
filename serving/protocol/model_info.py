"""The ``model.json`` schema: what a client needs to use a model (input size, channels, normalisation, output
labels, face-crop rules per detector). The model server reads it from disk beside ``model.onnx`` and sends it
unchanged as the model's metadata (field ``emotion_detector``); clients parse it here, whether they got it
from the server or from the file (in-process models), so there is one reading of the schema."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_JSON = "model.json"


@dataclass(frozen=True)
class CropRule:
    """How to frame a detector's box like the model's training images (measured by training/crop_calibration.py)."""

    side_per_box_width: float = 1.0  # side of the square crop / box width
    center_dx_per_box_width: float = 0.0  # crop centre minus box centre, in box widths
    center_dy_per_box_height: float = 0.0  # ... in box heights (positive: lower)

    @classmethod
    def from_dict(cls, raw: dict) -> CropRule:
        return cls(raw["side_per_box_width"], raw["center_dx_per_box_width"], raw["center_dy_per_box_height"])

    def square(self, box_xyxy: np.ndarray) -> np.ndarray:
        """(N, 4) boxes → (N, 4) square crop regions (may extend past the image)."""
        x1, y1, x2, y2 = box_xyxy.T
        w, h = x2 - x1, y2 - y1
        cx = (x1 + x2) / 2 + self.center_dx_per_box_width * w
        cy = (y1 + y2) / 2 + self.center_dy_per_box_height * h
        half = self.side_per_box_width * w / 2
        return np.stack([cx - half, cy - half, cx + half, cy + half], axis=1)


@dataclass(frozen=True)
class OutputSpec:
    tensor: str  # the output's name in the Predict response
    labels: tuple[str, ...] | None  # class names, in output order; None for a regression
    # A calibrated model's probabilities are trustworthy enough for a threshold: a top probability below it
    # means the label is more often wrong than right (measured on validation data at export). 0: never.
    uncertain_below: float = 0.0


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    input_name: str
    outputs: dict[str, OutputSpec]  # head ("emotion" | "age" | "gender") → its output
    size: int
    grey: bool
    mean: float
    std: float
    crop_rules: dict[str, CropRule]
    execution_provider: str | None = None  # "cuda" | "cpu", as the server says; None: a server that does not

    @classmethod
    def from_metadata(cls, name: str, version: int, info: dict) -> ModelSpec:
        """``model.json`` as the server describes it: one ``output`` (its head is the model's name) or, for a
        model with several heads, ``outputs`` keyed by head (the tensor is named like its head unless said)."""
        shape = [int(d) for d in info["input"]["shape"]]
        norm = info["input"]["normalization"]
        measured = info["input"].get("face_crop")
        rules = {d: CropRule.from_dict(rule) for d, rule in measured.items()} if isinstance(measured, dict) else {}
        described = info["outputs"] if "outputs" in info else {name: info["output"]}
        outputs = {
            head: OutputSpec(
                output.get("name", head), tuple(output["labels"]) if "labels" in output else None, float(output.get("uncertain_below", 0.0))
            )
            for head, output in described.items()
        }
        return cls(
            name=name,
            version=version,
            input_name=info["input"]["name"],
            outputs=outputs,
            size=shape[1],
            grey=shape[3] == 1,
            mean=float(norm["mean"]),
            std=float(norm["std"]),
            crop_rules=rules,
            execution_provider=info.get("execution_provider"),
        )

    @property
    def every_face(self) -> bool:
        """Expression is measured on every face of every frame; age and gender only when due."""
        return "emotion" in self.outputs

    def crop_rule(self, detector: str) -> CropRule:
        return self.crop_rules.get(detector, CropRule())

    def normalise(self, crops_uint8: np.ndarray) -> np.ndarray:
        return ((crops_uint8.astype(np.float32) / 255 - self.mean) / self.std).astype(np.float32)


def read_model_json(directory: Path, name: str, version: int) -> dict:
    """A version directory's ``model.json`` as sent on the wire ({} when there is none), refused with the reason
    when it does not follow the schema, so a broken file fails at load rather than in every client."""
    path = Path(directory) / MODEL_JSON
    if not path.exists():
        return {}
    info = json.loads(path.read_text())
    try:
        ModelSpec.from_metadata(name, version, info)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as error:
        raise ValueError(f"{path} does not follow the model.json schema: {type(error).__name__}: {error}") from error
    return info
