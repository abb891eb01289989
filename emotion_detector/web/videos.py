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
from pydantic import BaseModel, ConfigDict, Field
from werkzeug.exceptions import HTTPException

from emotion_detector.videos.probe import VideoRejected
from emotion_detector.videos.schemas import VideoCreated, VideoList, VideoResults, VideoStatus
from emotion_detector.videos.service import Conflict, NotFound, StorageFull, VideoService
from emotion_detector.web import services, uploads
from emotion_detector.web.auth import limited_per_key_and_address, owner
from emotion_detector.web.native import run_on_native_thread
from emotion_detector.web.openapi import Content, operation, parsed
from emotion_detector.web.security import api_error as error
from emotion_detector.web.security import json_error

blueprint = Blueprint("videos", __name__)
UPLOAD_OVERHEAD_BYTES = 1024 * 1024  # multipart headers around the file
MAX_EVERY_N_FRAMES = 1000  # over half a minute between analysed frames at 30 fps


class UploadQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    every_n_frames: int | None = Field(None, ge=1, le=MAX_EVERY_N_FRAMES)  # analyse every n-th frame (default: the server's)
    filename: str = "video"  # the video's name, for a raw body (multipart bodies carry their own)
    blur_faces: bool = False  # pixelate the faces in the annotated video (the labels stay)


class AnnotatedQuery(BaseModel):
    model_config = ConfigDict(frozen=True)

    download: bool = False  # true: as an attachment


def service() -> VideoService:
    return services().videos


STATUS_FOR_REJECTION = {"video_too_large": 413, "video_too_long": 413, "not_a_video": 415}


@blueprint.errorhandler(NotFound)
def not_found(exc: NotFound) -> ResponseReturnValue:
    return error("not_found", f"no video with id {exc}", 404)


@blueprint.errorhandler(Conflict)
def conflict(exc: Conflict) -> ResponseReturnValue:
    return error("conflict", str(exc), 409)


@blueprint.errorhandler(StorageFull)
def storage_full(exc: StorageFull) -> ResponseReturnValue:
    message = "the server's storage is full: the upload was not stored. Try again later; if it persists, tell the server's operator"
    return error("storage_full", message, 507)


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
    )


@blueprint.get("/videos/<video_id:video_id>")
def video_page(video_id: str) -> ResponseReturnValue:
    video = service().get(video_id, owner=owner())
    return render_template("video.html", video=video)


# ---- API ---------------------------------------------------------------------------------------------


@blueprint.post("/api/v1/videos")
@operation(
    "Upload a video to analyse (a job: poll status_url)",
    tag="videos",
    query=UploadQuery,
    body=Content.upload("video", "video/mp4", "application/octet-stream"),
    body_description="The video: the multipart field 'video', or the raw body (then ?filename= names it). Read as it arrives.",
    responses={202: ("Queued", VideoCreated)},
    errors=(413, 415, 429, 503, 507),
    headers={202: {"Location": "the job's status URL (status_url)"}},
)
@limited_per_key_and_address(lambda: service().settings.rate_limit_upload)
def upload() -> ResponseReturnValue:
    request.max_content_length = service().settings.video_max_bytes + UPLOAD_OVERHEAD_BYTES
    query = parsed(UploadQuery)
    if request.mimetype == "multipart/form-data":
        boundary = request.mimetype_params.get("boundary", "")
        if not boundary:
            return error("bad_request", "the multipart body has no boundary", 400)
        try:
            filename, chunks = uploads.multipart_file(request.stream, boundary.encode("latin-1"), "video")
        except uploads.MissingFile:
            return error("missing_video", "send the video as the multipart field 'video'", 400)
    else:
        filename, chunks = query.filename, uploads.raw_body(request.stream)
    video = service().create(
        chunks, filename or "video", query.every_n_frames, owner=owner(), blur_faces=query.blur_faces, run_cpu_bound=run_on_native_thread
    )
    created = VideoCreated(id=video.id, status=video.status, status_url=url_for("videos.status", video_id=video.id))
    return jsonify(created.to_json()), 202, {"Location": created.status_url}


@blueprint.get("/api/v1/videos")
@operation("This key's videos, newest first", tag="videos", responses={200: ("The videos", VideoList)}, errors=(503,))
def list_videos() -> ResponseReturnValue:
    return jsonify(service().list(owner=owner()).to_json())


@blueprint.get("/api/v1/videos/<video_id:video_id>")
@operation("A video job's status", tag="videos", responses={200: ("Its status", VideoStatus)}, errors=(503,))
def status(video_id: str) -> ResponseReturnValue:
    return jsonify(service().status(video_id, owner=owner()).to_json())


@blueprint.get("/api/v1/videos/<video_id:video_id>/results")
@operation(
    "A finished video's results: people, their timelines and statistics, the group's expression mix",
    tag="videos",
    responses={200: ("The results", VideoResults)},
    errors=(409, 503),
)
def results(video_id: str) -> ResponseReturnValue:
    return jsonify(service().results(video_id, owner=owner()).to_json())


@blueprint.get("/api/v1/videos/<video_id:video_id>/results.csv")
@operation(
    "A finished video's results as CSV: one row per person per analysed frame",
    tag="videos",
    responses={200: ("The CSV (an attachment)", Content.binary("text/csv"))},
    errors=(409, 503),
)
def results_csv(video_id: str) -> ResponseReturnValue:
    chunks = service().results_csv(video_id, owner=owner())
    filename = f"{service().get(video_id, owner=owner()).filename.rsplit('.', 1)[0]}-emotions.csv"
    return Response(chunks, mimetype="text/csv", headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@blueprint.get("/api/v1/videos/<video_id:video_id>/annotated")
@operation(
    "The annotated video (H.264 MP4; Range requests for seeking)",
    tag="videos",
    query=AnnotatedQuery,
    responses={
        200: ("The video", Content.binary("video/mp4")),
        206: ("The requested range of it", Content.binary("video/mp4")),
    },
    errors=(409, 416, 503),
)
def annotated(video_id: str) -> ResponseReturnValue:
    path = service().annotated_path(video_id, owner=owner())
    download = parsed(AnnotatedQuery).download
    name = f"{service().get(video_id, owner=owner()).filename.rsplit('.', 1)[0]}-annotated.mp4"
    return send_file(path, mimetype="video/mp4", conditional=True, as_attachment=download, download_name=name)


@blueprint.post("/api/v1/videos/<video_id:video_id>/cancel")
@operation("Cancel a queued or running job", tag="videos", responses={200: ("Its status", VideoStatus)}, errors=(409, 503))
def cancel(video_id: str) -> ResponseReturnValue:
    return jsonify(service().cancel(video_id, owner=owner()).to_json())


@blueprint.post("/api/v1/videos/<video_id:video_id>/retry")
@operation("Run a failed or cancelled job again", tag="videos", responses={202: ("Queued again", VideoStatus)}, errors=(409, 503))
def retry(video_id: str) -> ResponseReturnValue:
    return jsonify(service().retry(video_id, owner=owner()).to_json()), 202


@blueprint.delete("/api/v1/videos/<video_id:video_id>")
@operation("Delete a video, its results and files", tag="videos", responses={204: ("Deleted", None)}, errors=(409, 503))
def remove(video_id: str) -> ResponseReturnValue:
    service().delete(video_id, owner=owner())
    return "", 204
