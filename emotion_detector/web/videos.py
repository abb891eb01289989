"""Video pages and API (DESIGN.md §2, video jobs):

POST   /api/v1/videos                 multipart 'video' (or the raw body) -> 202 {id, status_url}
GET    /api/v1/videos                 past videos
GET    /api/v1/videos/<id>            {id, status, progress, error?}; status: queued|running|done|failed|cancelled
GET    /api/v1/videos/<id>/results    JSON; /results.csv (one row per person per analysed frame)
GET    /api/v1/videos/<id>/annotated  the annotated MP4 (range requests, so browsers can seek)
POST   /api/v1/videos/<id>/cancel, /retry;  DELETE /api/v1/videos/<id>
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, render_template, request, send_file, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import HTTPException

from emotion_detector.videos.probe import VideoRejected
from emotion_detector.videos.schemas import VideoCreated
from emotion_detector.videos.service import Conflict, NotFound, VideoService
from emotion_detector.web import services, uploads
from emotion_detector.web.auth import by_address, by_key, limiter, owner, principal
from emotion_detector.web.live import run_on_native_thread
from emotion_detector.web.security import json_error

blueprint = Blueprint("videos", __name__)
UPLOAD_OVERHEAD_BYTES = 1024 * 1024  # multipart headers around the file
MAX_EVERY_N_FRAMES = 1000  # over half a minute between analysed frames at 30 fps


def _bounded_int(text: str, lowest: int, highest: int) -> int | None:
    """``text`` as an integer within [lowest, highest], else None (``1e23``, ``-1``, ``2.5``, digits past the bound)."""
    if not text.strip().isdigit() or len(text.strip()) > len(str(highest)):
        return None
    value = int(text)
    return value if lowest <= value <= highest else None


def service() -> VideoService:
    return services().videos


def error(code: str, message: str, status: int) -> ResponseReturnValue:
    return jsonify({"error": {"code": code, "message": message}}), status


STATUS_FOR_REJECTION = {"video_too_large": 413, "video_too_long": 413, "not_a_video": 415}


@blueprint.errorhandler(NotFound)
def not_found(exc: NotFound) -> ResponseReturnValue:
    return error("not_found", f"no video with id {exc}", 404)


@blueprint.errorhandler(Conflict)
def conflict(exc: Conflict) -> ResponseReturnValue:
    return error("conflict", str(exc), 409)


@blueprint.errorhandler(VideoRejected)
def rejected(exc: VideoRejected) -> ResponseReturnValue:
    return error(exc.code, exc.message, STATUS_FOR_REJECTION.get(exc.code, 400))


@blueprint.errorhandler(HTTPException)
def http_error(exc: HTTPException) -> ResponseReturnValue:
    if exc.code == 413:
        return error("video_too_large", f"the upload is larger than the limit of {service().settings.video_max_bytes} bytes", 413)
    return json_error(exc)


# ---- pages -------------------------------------------------------------------------------------------


@blueprint.get("/videos")
def videos_page() -> ResponseReturnValue:
    settings = service().settings
    return render_template(
        "videos.html",
        max_bytes=settings.video_max_bytes,
        max_duration_s=settings.video_max_duration_s,
        retention_days=settings.video_retention_days,
        signed_in=principal().via == "session",
    )


@blueprint.get("/videos/<video_id>")
def video_page(video_id: str) -> ResponseReturnValue:
    video = service().get(video_id, owner=owner())
    return render_template("video.html", video=video)


# ---- API ---------------------------------------------------------------------------------------------


@blueprint.post("/api/v1/videos")
@limiter.limit(lambda: service().settings.rate_limit_upload, key_func=by_key)
@limiter.limit(lambda: service().settings.rate_limit_upload, key_func=by_address)
def upload() -> ResponseReturnValue:
    request.max_content_length = service().settings.video_max_bytes + UPLOAD_OVERHEAD_BYTES
    every = None
    if "every_n_frames" in request.args:
        every = _bounded_int(request.args["every_n_frames"], 1, MAX_EVERY_N_FRAMES)
        if every is None:
            return error("bad_request", f"every_n_frames must be an integer from 1 to {MAX_EVERY_N_FRAMES}", 400)
    if request.mimetype == "multipart/form-data":
        boundary = request.mimetype_params.get("boundary", "")
        if not boundary:
            return error("bad_request", "the multipart body has no boundary", 400)
        try:
            filename, chunks = uploads.multipart_file(request.stream, boundary.encode("latin-1"), "video")
        except uploads.MissingFile:
            return error("missing_video", "send the video as the multipart field 'video'", 400)
    else:
        filename, chunks = request.args.get("filename", "video"), uploads.raw_body(request.stream)
    video = service().create(chunks, filename or "video", every, owner=owner(), run_cpu_bound=run_on_native_thread)
    created = VideoCreated(id=video.id, status=video.status, status_url=url_for("videos.status", video_id=video.id))
    return jsonify(created.to_json()), 202, {"Location": created.status_url}


@blueprint.get("/api/v1/videos")
def list_videos() -> ResponseReturnValue:
    return jsonify(service().list(owner=owner()).to_json())


@blueprint.get("/api/v1/videos/<video_id>")
def status(video_id: str) -> ResponseReturnValue:
    return jsonify(service().status(video_id, owner=owner()).to_json())


@blueprint.get("/api/v1/videos/<video_id>/results")
def results(video_id: str) -> ResponseReturnValue:
    return jsonify(service().results(video_id, owner=owner()).to_json())


@blueprint.get("/api/v1/videos/<video_id>/results.csv")
def results_csv(video_id: str) -> ResponseReturnValue:
    chunks = service().results_csv(video_id, owner=owner())
    filename = f"{service().get(video_id, owner=owner()).filename.rsplit('.', 1)[0]}-emotions.csv"
    return Response(chunks, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@blueprint.get("/api/v1/videos/<video_id>/annotated")
def annotated(video_id: str) -> ResponseReturnValue:
    path = service().annotated_path(video_id, owner=owner())
    download = request.args.get("download") == "1"
    name = f"{service().get(video_id, owner=owner()).filename.rsplit('.', 1)[0]}-annotated.mp4"
    return send_file(path, mimetype="video/mp4", conditional=True, as_attachment=download, download_name=name)


@blueprint.post("/api/v1/videos/<video_id>/cancel")
def cancel(video_id: str) -> ResponseReturnValue:
    return jsonify(service().cancel(video_id, owner=owner()).to_json())


@blueprint.post("/api/v1/videos/<video_id>/retry")
def retry(video_id: str) -> ResponseReturnValue:
    return jsonify(service().retry(video_id, owner=owner()).to_json()), 202


@blueprint.delete("/api/v1/videos/<video_id>")
def remove(video_id: str) -> ResponseReturnValue:
    service().delete(video_id, owner=owner())
    return "", 204
