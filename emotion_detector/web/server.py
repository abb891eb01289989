"""The web process's side of gunicorn (gunicorn.conf.py names these): a gevent worker whose own error
answers are the API's JSON, and a post-request hook that reads what is left of a refused upload's body
without holding up the worker's other sockets."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any

import gevent
from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker as _GunicornGeventWorker

from emotion_detector.web.security import ERROR_CODES

DRAIN_MAX_S = 10.0  # a refused upload's remaining body is read for this long at most; then the connection closes
DRAIN_CHUNK_BYTES = 256 * 1024
MAX_MESSAGE_CHARS = 200


class GeventWorker(_GunicornGeventWorker):  # type: ignore[misc]  # gunicorn has no type information
    """gunicorn's gevent worker, whose own error answers (a request line or headers over gunicorn's limits, a
    malformed request: refused before the app sees anything) are ``{"error": {"code", "message"}}`` JSON
    rather than an HTML page. At that point the path may not even be parsed, so pages get JSON too."""

    def init_process(self) -> None:
        util.write_error = write_json_error  # what Worker.handle_error calls; this worker process's only
        super().init_process()


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    code = ERROR_CODES.get(status_int, "bad_request" if status_int < 500 else "internal_error")
    message = f"{reason}: {mesg}" if mesg else reason
    body = json.dumps({"error": {"code": code, "message": message[:MAX_MESSAGE_CHARS]}}).encode()
    head = f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    util.write_nonblock(sock, head.encode("latin-1") + body)


def post_request(worker: Any, req: Any, environ: dict[str, Any], resp: Any) -> None:
    """Read and drop what the app left unread of the request's body (an upload refused at its size limit,
    without a key, over a rate limit) before the connection takes its next request.

    gunicorn does this itself, 1 KiB at a time: from a fast client the socket always has data, so the read
    never blocks, never yields, and the worker's other sockets wait until the whole body is in (a live stream
    stalled 15 s behind a refused 300 MiB upload). Here it goes in large pieces with a yield between them,
    for at most DRAIN_MAX_S: by then a client still sending is cut off (it has its answer: the refusal was
    sent before this hook runs), and gunicorn closes the connection instead of reading on."""
    body = getattr(req, "body", None)
    if body is not None and not _drained(body):
        req.must_close = True  # gunicorn closes the connection instead of reading on


def _drained(body: Any) -> bool:
    """True once the body is read to its end; False if DRAIN_MAX_S passed first, or it could not be read."""
    drained = False
    # gevent.Timeout is no Exception: when it fires, it leaves the block (False: silently) with drained False.
    with gevent.Timeout(DRAIN_MAX_S, False), contextlib.suppress(Exception):  # a client gone, a malformed body
        while body.read(DRAIN_CHUNK_BYTES):
            time.sleep(0)  # patched by gevent: the other greenlets run
        drained = True
    return drained
