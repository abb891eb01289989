"""The live page and its websocket, ``/ws/live`` (DESIGN.md §2): binary JPEG/PNG frames in, one JSON result
(or error) out per processed frame. Frames that queue up while one is processed are dropped, newest wins,
and the result says how many; the connection survives bad frames and a model server that is down.
Frames are never written to disk or logs."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any, Literal

from flask import Blueprint, render_template
from flask.typing import ResponseReturnValue
from flask_sock import ConnectionClosed, Sock
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from emotion_detector import metrics
from emotion_detector.frames import FrameError
from emotion_detector.model_client import ModelServerError, ModelUnavailable
from emotion_detector.pipeline import FramePipeline, RunningMode
from emotion_detector.web import services
from emotion_detector.web.auth import limited_per_key_and_address
from emotion_detector.web.native import run_on_native_thread

log = logging.getLogger(__name__)
blueprint = Blueprint("live", __name__)
sock = Sock()
# The socket has a blueprint of its own so that its rate limits are checked before the upgrade (a limit on the
# view itself would be checked inside flask-sock, after the handshake): a refused client gets a 429, no socket.
socket_blueprint = Blueprint("live_socket", __name__)
limited_per_key_and_address(lambda: services().settings.rate_limit_live)(socket_blueprint)


@blueprint.get("/")
def page() -> ResponseReturnValue:
    found = services()
    return render_template("live.html", detector=found.detector, min_face_px=found.analyzer.search.options.min_face_px)


def _hello() -> dict[str, Any]:
    found = services()
    try:
        versions = {name: spec.version for name, spec in found.client.specs().items()}
    except (ModelUnavailable, ModelServerError):
        versions = None
    return {
        "type": "hello",
        "detector": {
            "name": found.detector.name,
            "model": found.detector.model.rsplit("/", 1)[-1],
            "degraded": found.detector.degraded,
            "min_face_px": found.analyzer.search.options.min_face_px,
        },
        "models": versions,
        "max_frame_bytes": found.settings.max_frame_bytes,
    }


MAX_TEXT_MESSAGE_BYTES = 64 * 1024


class ConfigMessage(BaseModel):
    # A field this server does not know is refused, not ignored: a client that believes it set something
    # (a misspelt name, a setting of another version) is told so.
    model_config = ConfigDict(extra="forbid")

    type: Literal["config"]


class PingMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["ping"]
    t: int | float | str | None = None  # echoed back, for the client's own round-trip clock


# pydantic's JSON parser has a depth limit, so a message nested thousands of levels deep is a validation
# error like any other instead of a RecursionError.
CONTROL_MESSAGE = TypeAdapter(Annotated[ConfigMessage | PingMessage, Field(discriminator="type")])
CONTROL_FIELDS = {"config": list(ConfigMessage.model_fields), "ping": list(PingMessage.model_fields)}


def live_socket(ws: Any) -> None:
    session = services().analyzer.pipeline(RunningMode.LIVE, run_cpu_bound=run_on_native_thread)
    counted = metrics.web()
    counted.live_sockets.inc()
    try:
        _serve(ws, session, counted)
    finally:
        counted.live_sockets.dec()


# Registered by a call, not as a decorator: flask-sock's decorator returns None, and this keeps the view
# callable on its own (tests drive it with a stand-in socket).
sock.route("/ws/live", bp=socket_blueprint)(live_socket)


def _serve(ws: Any, session: FramePipeline, counted: metrics.WebMetrics) -> None:
    ws.send(json.dumps(_hello()))
    received = 0
    try:
        while True:
            message = ws.receive()
            if isinstance(message, str):
                ws.send(json.dumps(_control(message)))
                continue
            received += 1
            dropped = 0
            while (newer := ws.receive(timeout=0)) is not None:  # newest frame wins
                if isinstance(newer, str):
                    ws.send(json.dumps(_control(newer)))
                    continue
                message, received, dropped = newer, received + 1, dropped + 1
            answer = _process(session, message, received, dropped)
            _count(counted, answer, dropped)
            ws.send(json.dumps(answer))
    except ConnectionClosed:
        pass


def _count(counted: metrics.WebMetrics, answer: dict[str, Any], dropped: int) -> None:
    counted.live_frames_answered.labels(answer["type"]).inc()  # "result" or "error"
    if dropped:
        counted.live_frames_dropped.inc(dropped)
    if answer["type"] == "result":
        counted.observe_stages("live", answer["timing_ms"])


def _process(session: FramePipeline, frame: bytes, number: int, dropped: int) -> dict[str, Any]:
    """One frame → its result, or an error message; never raises, so no frame can close the socket."""
    try:
        analysis = session.process(frame)
    except FrameError as error:  # the client's data: one line, no traceback (and never the frame itself)
        log.info("live frame %d rejected: %s", number, error.code)
        return {"type": "error", "frame": number, "code": error.code, "message": error.message}
    except ModelUnavailable as error:
        log.warning("live frame %d: %s", number, error)
        return {"type": "error", "frame": number, "code": "model_unavailable", "message": "the model server is unavailable; retrying"}
    except ModelServerError as error:
        log.error("live frame %d: %s", number, error)
        return {"type": "error", "frame": number, "code": "model_error", "message": str(error)}
    except Exception:  # a bug on our side: keep its traceback, keep the stream
        log.exception("live frame %d: unexpected error", number)
        return {"type": "error", "frame": number, "code": "internal_error", "message": "this frame could not be analysed (server error)"}
    return {"type": "result", "frame": number, "dropped": dropped, **analysis.to_json()}


def _control(text: str) -> dict[str, Any]:
    """A text message → the answer to send back."""
    if len(text) > MAX_TEXT_MESSAGE_BYTES:
        return {"type": "error", "code": "bad_message", "message": f"text messages are limited to {MAX_TEXT_MESSAGE_BYTES} bytes"}
    try:
        message = CONTROL_MESSAGE.validate_json(text)
    except ValidationError as error:
        problem = error.errors(include_url=False, include_context=False, include_input=False)[0]
        if problem["type"] == "extra_forbidden":
            kind, field = str(problem["loc"][0]), str(problem["loc"][-1])
            fields = ", ".join(CONTROL_FIELDS[kind])
            unknown = f"unknown field {field!r} in a {kind} message (its fields: {fields}); nothing was changed"
            return {"type": "error", "code": "bad_message", "message": unknown}
        return {"type": "error", "code": "bad_message", "message": f"expected a JSON config or ping message: {problem['msg']}"}
    if isinstance(message, PingMessage):
        return {"type": "pong", "t": message.t}
    return {"type": "config", "accepted": True}
