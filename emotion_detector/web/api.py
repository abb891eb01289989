"""REST API: ``POST /api/v1/analyze`` (one image; ``detect=false`` for a ready face crop), health."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from emotion_detector import metrics
from emotion_detector.frames import FrameError
from emotion_detector.model_client import ModelServerError, ModelUnavailable
from emotion_detector.schemas import ImageAnalysis
from emotion_detector.web import services
from emotion_detector.web.auth import limited_per_key_and_address, owner
from emotion_detector.web.openapi import Content, operation, parsed
from emotion_detector.web.security import api_error as error
from emotion_detector.web.security import database_unavailable, json_error

log = logging.getLogger(__name__)
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

STATUS_FOR_CODE = {"frame_too_large": 413, "image_too_large": 413, "unsupported_format": 415}


class AnalyzeQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    detect: bool = True  # false: the whole image is one face crop (one face, box = the whole image)


class DetectorInfo(BaseModel):
    name: str
    model: str  # the model file in use
    degraded: bool  # detection runs on the Haar cascade fallback
    execution_provider: Literal["cuda", "cpu"]  # what runs it: an NVIDIA GPU, or the CPU
    min_face_px: float  # the smallest face height looked for (pictures larger than min_face_px_up_to_pixels: larger)
    min_face_px_up_to_pixels: int  # pictures with more pixels than this are searched from a larger face


class Health(BaseModel):
    """GET /api/v1/health: 200 (ok or degraded) or 503 (unavailable, naming what is ``down``). Anyone gets the
    status and what is down; the details (which detector and models, why something is down) only a request
    with a valid API key (or a signed-in page), or any request when auth is off: they tell an attacker what
    runs here and how it fails."""

    status: Literal["ok", "degraded", "unavailable"]
    down: list[Literal["models", "database", "queue"]] | None = None  # only when unavailable
    detector: DetectorInfo | None = None  # the details, from here on
    models: dict[str, int] | None = None  # model name → version served
    # model name → "cuda" | "cpu", where the server (or this process) runs it; absent from older model servers
    model_execution_providers: dict[str, str] | None = None
    database: str | None = None  # "ok" or "down: <why>"
    queue: str | None = None
    problems: list[str] | None = None


@blueprint.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> ResponseReturnValue:
    return json_error(exc)


@blueprint.errorhandler(DBAPIError)
def database_error(exc: DBAPIError) -> ResponseReturnValue:
    return database_unavailable(exc)


@blueprint.errorhandler(Exception)
def unexpected_error(exc: Exception) -> ResponseReturnValue:
    log.exception("API request failed: %s", request.path)
    return error("internal_error", "the server could not process this request", 500)


IMAGE_BODY = Content.upload("image", "image/jpeg", "image/png", "application/octet-stream")


@blueprint.post("/analyze")
@operation(
    "Faces in one image: expression, apparent age and apparent gender",
    tag="images",
    query=AnalyzeQuery,
    body=IMAGE_BODY,
    body_description="A JPEG or PNG image: the raw body, or the multipart field 'image'",
    responses={200: ("The faces found (none is an empty list)", ImageAnalysis)},
    errors=(413, 415, 429, 502, 503),
)
@limited_per_key_and_address(lambda: services().settings.rate_limit_analyze)
def analyze() -> ResponseReturnValue:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            return error("missing_image", "send the image as the multipart field 'image' or as the raw request body", 400)
        data = upload.read()
    else:
        data = request.get_data()  # the raw body, whatever Content-Type the client claimed
    try:
        analysis = services().analyzer.analyze_image(data, detect=parsed(AnalyzeQuery).detect)
    except FrameError as exc:
        return error(exc.code, exc.message, STATUS_FOR_CODE.get(exc.code, 400))
    except ModelUnavailable:
        return error("model_unavailable", "the model server is unavailable; try again shortly", 503)
    except ModelServerError as exc:
        return error("model_error", str(exc), 502)
    metrics.web().observe_stages("image", analysis.timing_ms)
    return jsonify(analysis.to_json())


@blueprint.get("/health")
@operation(
    "Whether the app can analyse faces and take video jobs (no API key needed; details only with one)",
    tag="health",
    public=True,
    responses={200: ("ok, or degraded (see problems)", Health), 503: ("unavailable: see down and problems", Health)},
)
def health() -> ResponseReturnValue:
    """200 while the app can analyse faces and take video jobs (``degraded`` when only the Haar fallback
    detects faces), 503 naming what is down: the model server, the database or the job queue."""
    found = services()
    search = found.analyzer.search
    detector = DetectorInfo(
        name=found.detector.name,
        model=Path(found.detector.model).name,  # the file, not where it is installed
        degraded=found.detector.degraded,
        execution_provider=found.detector.execution_provider,
        min_face_px=search.options.min_face_px,
        min_face_px_up_to_pixels=search.largest_picture_at_min_face_px(),
    )
    problems = [f"face detection runs on the fallback {found.detector.name} detector"] if found.detector.degraded else []
    down: list[Literal["models", "database", "queue"]] = []
    models: dict[str, int] = {}
    model_providers: dict[str, str] = {}
    try:
        found.client.check()
        models = {name: spec.version for name, spec in found.client.specs().items()}
        model_providers = {name: spec.execution_provider for name, spec in found.client.specs().items() if spec.execution_provider}
    except (ModelUnavailable, ModelServerError) as exc:
        down.append("models")
        problems.append(str(exc))
    checks = found.videos.check()
    for name in ("database", "queue"):
        if checks[name] != "ok":
            down.append(name)
            problems.append(f"the {name} is {checks[name]}")
    status = "unavailable" if down else "degraded" if problems else "ok"
    report = Health(status=status, down=down or None)
    if found.settings.auth == "off" or owner() is not None:
        report = report.model_copy(
            update={
                "detector": detector,
                "models": models,
                "model_execution_providers": model_providers or None,
                "database": checks["database"],
                "queue": checks["queue"],
                "problems": problems,
            }
        )
    return jsonify(report.model_dump(mode="json", exclude_none=True)), 503 if down else 200
