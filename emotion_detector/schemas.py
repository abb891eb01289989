"""The face object and the image analysis of DESIGN.md §2 as schemas: what ``Face.to_json`` and
``FrameAnalysis.to_json`` serialise, and what the OpenAPI description of the API says they are."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field


class _Schema(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)  # "id" only for tracked faces


Probability = Annotated[float, Field(ge=0, le=1)]


class EmotionResult(_Schema):
    label: str  # the most probable expression
    confidence: Probability
    uncertain: bool  # the top expression is more often wrong than right at this confidence
    probabilities: dict[str, Probability]  # every expression of the model, summing to 1


class AgeResult(_Schema):
    years: float  # apparent age


class GenderResult(_Schema):
    label: str  # female | male
    confidence: Probability


class FaceResult(_Schema):
    """One face (DESIGN.md §2): ``box`` in pixels of the submitted frame, ``id`` a track id (absent for images)."""

    id: int | None = None
    box: list[float] = Field(min_length=4, max_length=4)  # x1, y1, x2, y2
    score: float  # detection confidence (0..1)
    emotion: EmotionResult
    age: AgeResult
    gender: GenderResult


def no_faces_message(min_face_px: float) -> str:
    """What an answer without faces says (pages, API, CLI): the size searched from, and what to try."""
    return (
        f"No faces found. Faces smaller than {min_face_px:.0f} px high are not looked for: "
        "try a larger picture, or a closer view of the faces."
    )


class DetectionInfo(_Schema):
    """Which detector looked, and the smallest face it looked for: an answer without faces has none above it."""

    detector: str  # centerface | blazeface | blazeface_full_range | yunet | haar
    min_face_px: float  # the smallest face height looked for, in pixels of this picture


class ImageAnalysis(_Schema):
    """POST /api/v1/analyze: the faces of one image (also each live result and each frame of the CLI)."""

    faces: list[FaceResult]
    width: int  # pixels
    height: int
    timing_ms: dict[str, float]  # stage → milliseconds spent on it
    detection: DetectionInfo | None = None  # absent when detection was skipped (detect=false)
    message: str | None = None  # only when no face was found: why, and what to try
