"""REST API: ``POST /api/v1/analyze`` (one image; ``detect=false`` for a ready face crop), health."""

from __future__ import annotations

import logging

from flask import Blueprint, jsonify, request
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import DBAPIError
from werkzeug.exceptions import HTTPException

from emotion_detector.frames import FrameError
from emotion_detector.model_client import ModelServerError, ModelUnavailable
from emotion_detector.web import services
from emotion_detector.web.auth import by_address, by_key, limiter
from emotion_detector.web.security import database_unavailable, json_error

log = logging.getLogger(__name__)
blueprint = Blueprint("api", __name__, url_prefix="/api/v1")

STATUS_FOR_CODE = {"frame_too_large": 413, "image_too_large": 413, "unsupported_format": 415}


def error(code: str, message: str, status: int) -> ResponseReturnValue:
    return jsonify({"error": {"code": code, "message": message}}), status


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


@blueprint.post("/analyze")
@limiter.limit(lambda: services().settings.rate_limit_analyze, key_func=by_key)
@limiter.limit(lambda: services().settings.rate_limit_analyze, key_func=by_address)
def analyze() -> ResponseReturnValue:
    if request.mimetype == "multipart/form-data":
        upload = request.files.get("image")
        if upload is None:
            return error("missing_image", "send the image as the multipart field 'image' or as the raw request body", 400)
        data = upload.read()
    else:
        data = request.get_data()  # the raw body, whatever Content-Type the client claimed
    detect = request.args.get("detect", "true").lower() not in ("false", "0", "no")
    try:
        analysis = services().analyzer.analyze_image(data, detect=detect)
    except FrameError as exc:
        return error(exc.code, exc.message, STATUS_FOR_CODE.get(exc.code, 400))
    except ModelUnavailable:
        return error("model_unavailable", "the model server is unavailable; try again shortly", 503)
    except ModelServerError as exc:
        return error("model_error", str(exc), 502)
    return jsonify(analysis.to_json())


@blueprint.get("/health")
def health() -> ResponseReturnValue:
    """200 while the app can analyse faces and take video jobs (``degraded`` when only the Haar fallback
    detects faces), 503 naming what is down: the model server, the database or the job queue."""
    found = services()
    detector = {"name": found.detector.name, "model": found.detector.model, "degraded": found.detector.degraded}
    problems = [f"face detection runs on the fallback {found.detector.name} detector"] if found.detector.degraded else []
    down: list[str] = []
    models: dict[str, int] = {}
    try:
        found.client.check()
        models = {name: spec.version for name, spec in found.client.specs().items()}
    except (ModelUnavailable, ModelServerError) as exc:
        down.append("models")
        problems.append(str(exc))
    checks = found.videos.check()
    for name, state in checks.items():
        if state != "ok":
            down.append(name)
            problems.append(f"the {name} is {state}")
    body = {"detector": detector, "models": models, "database": checks["database"], "queue": checks["queue"], "problems": problems}
    if down:
        return jsonify({"status": "unavailable", "down": down, **body}), 503
    return jsonify({"status": "degraded" if problems else "ok", **body})
