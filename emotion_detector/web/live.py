"""The live page and its websocket, ``/ws/live`` (DESIGN.md §2): binary JPEG/PNG frames in, one JSON result
(or error) out per processed frame. Frames that queue up while one is processed are dropped, newest wins,
and the result says how many; the connection survives bad frames and a model server that is down.
Frames are never written to disk or logs."""

from __future__ import annotations

import functools
import json
import logging
import os
from collections.abc import Callable
from typing import TypeVar

from flask import Blueprint, render_template
from flask_sock import ConnectionClosed, Sock

from emotion_detector.frames import FrameError
from emotion_detector.model_client import ModelServerError, ModelUnavailable
from emotion_detector.pipeline import LiveSession
from emotion_detector.web import services

log = logging.getLogger(__name__)
T = TypeVar("T")
blueprint = Blueprint("live", __name__)
sock = Sock()


@blueprint.get("/")
def page():
    found = services()
    return render_template("live.html", detector=found.detector)


def _hello() -> dict:
    found = services()
    try:
        versions = {name: spec.version for name, spec in found.client.specs().items()}
    except (ModelUnavailable, ModelServerError):
        versions = None
    return {
        "type": "hello",
        "detector": {"name": found.detector.name, "model": found.detector.model.rsplit("/", 1)[-1]},
        "models": versions,
        "max_frame_bytes": found.settings.max_frame_bytes,
    }


@sock.route("/ws/live")
def live_socket(ws) -> None:
    session = LiveSession(services().analyzer, run_cpu_bound=run_on_native_thread)
    ws.send(json.dumps(_hello()))
    received = 0
    try:
        while True:
            message = ws.receive()
            if isinstance(message, str):
                _control(ws, message)
                continue
            received += 1
            dropped = 0
            while (newer := ws.receive(timeout=0)) is not None:  # newest frame wins
                if isinstance(newer, str):
                    _control(ws, newer)
                    continue
                message, received, dropped = newer, received + 1, dropped + 1
            ws.send(json.dumps(_process(session, message, received, dropped)))
    except ConnectionClosed:
        pass


def _process(session: LiveSession, frame: bytes, number: int, dropped: int) -> dict:
    try:
        analysis = session.process(frame)
    except FrameError as error:
        return {"type": "error", "frame": number, "code": error.code, "message": error.message}
    except ModelUnavailable as error:
        log.warning("live frame %d: %s", number, error)
        return {"type": "error", "frame": number, "code": "model_unavailable", "message": "the model server is unavailable; retrying"}
    except ModelServerError as error:
        log.error("live frame %d: %s", number, error)
        return {"type": "error", "frame": number, "code": "model_error", "message": str(error)}
    return {"type": "result", "frame": number, "dropped": dropped, **analysis.to_json()}


def _control(ws, text: str) -> None:
    try:
        message = json.loads(text)
    except json.JSONDecodeError:
        ws.send(json.dumps({"type": "error", "code": "bad_message", "message": "text messages must be JSON"}))
        return
    kind = message.get("type") if isinstance(message, dict) else None
    if kind == "config":
        ws.send(json.dumps({"type": "config", "accepted": True}))
    elif kind == "ping":
        ws.send(json.dumps({"type": "pong", "t": message.get("t")}))
    else:
        ws.send(json.dumps({"type": "error", "code": "bad_message", "message": f"unknown message type {kind!r}"}))


def run_on_native_thread(work: Callable[[], T]) -> T:
    """Under gunicorn's gevent worker, run ``work`` on one of a few native threads and let other greenlets
    run meanwhile (bench/live.py, 20 clients x 5 frames/s: 83 -> 99 frames answered per second, round trip
    p99 293 -> 195 ms); elsewhere, just call it."""
    pool = _native_threads()
    return work() if pool is None else pool.apply(work)


@functools.cache
def _native_threads():
    """gevent's pool of native threads when this process runs under gevent, else None; decided once, on the
    first frame (the worker has patched the standard library by then), not per frame."""
    try:
        from gevent import monkey
        from gevent.threadpool import ThreadPool
    except ImportError:
        return None
    return ThreadPool(maxsize=os.cpu_count() or 2) if monkey.is_module_patched("socket") else None
