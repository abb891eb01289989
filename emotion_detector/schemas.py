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


class ImageAnalysis(_Schema):
    """POST /api/v1/analyze: the faces of one image."""

    faces: list[FaceResult]
    width: int  # pixels
    height: int
    timing_ms: dict[str, float]  # stage → milliseconds spent on it
