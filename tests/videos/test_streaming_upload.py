"""Uploads are read as they arrive: a multipart body is never parsed whole first, a body over the limit is
refused as soon as the limit passes (the rest is never read), and a declared length over it before any byte."""

from __future__ import annotations

import io
import json

import pytest
from werkzeug.test import EnvironBuilder, run_wsgi_app

from app import create_app
from emotion_detector.web import services
from tests.videos.conftest import embedded_settings

MAX_BYTES = 2_000_000
BOUNDARY = "----emotion-detector-test"


class CountingBody(io.RawIOBase):
    """A request body of ``size`` bytes that counts what the server read of it."""

    def __init__(self, head: bytes, size: int, tail: bytes = b""):
        self.head, self.size, self.tail, self.read_bytes = head, size, tail, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        start, head_end = self.read_bytes, len(self.head)
        end = min(start + len(buffer), head_end + self.size + len(self.tail))
        filler_end = head_end + self.size
        data = (
            self.head[start:head_end]
            + b"A" * max(0, min(end, filler_end) - max(start, head_end))
            + self.tail[max(0, start - filler_end) : max(0, end - filler_end)]
        )
        buffer[: len(data)] = data
        self.read_bytes += len(data)
        return len(data)


def part(name: str, content: bytes, filename: str | None = None) -> bytes:
    disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
    headers = f"--{BOUNDARY}\r\nContent-Disposition: {disposition}\r\nContent-Type: application/octet-stream\r\n\r\n"
    return headers.encode() + content + b"\r\n"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("streaming")
    return create_app(embedded_settings(tmp, video_max_bytes=MAX_BYTES)).test_client()


def post_raw(client, body: io.RawIOBase, content_type: str, content_length: int | None = None) -> tuple[int, dict]:
    """POST ``body`` as a server hands it to the app: with no Content-Length (a chunked request, which ends
    where the client says) unless one is given. The test client would measure the body, so the WSGI app is
    called directly."""
    environ = EnvironBuilder(path="/api/v1/videos", query_string="filename=x.mp4", method="POST", content_type=content_type).get_environ()
    environ.pop("CONTENT_LENGTH", None)
    if content_length is not None:
        environ["CONTENT_LENGTH"] = str(content_length)
    environ |= {"wsgi.input": io.BufferedReader(body), "wsgi.input_terminated": content_length is None}
    answer, status, _headers = run_wsgi_app(client.application, environ, buffered=True)
    return int(status.split()[0]), json.loads(b"".join(answer))


@pytest.mark.parametrize("multipart", [True, False])
def test_a_chunked_upload_over_the_limit_is_refused_as_soon_as_it_passes(client, multipart):
    size = 50 * MAX_BYTES  # 100 MB declared by nobody
    if multipart:
        body = CountingBody(part("note", b"hello") + part("video", b"", "big.mp4")[:-2], size)
        status, answer = post_raw(client, body, f"multipart/form-data; boundary={BOUNDARY}")
    else:
        body = CountingBody(b"", size)
        status, answer = post_raw(client, body, "video/mp4")
    assert status == 413 and answer["error"]["code"] == "video_too_large"
    assert body.read_bytes < MAX_BYTES + 1024 * 1024  # one chunk past the limit at most, not the 100 MB


def test_a_declared_length_over_the_limit_is_refused_before_reading(client):
    body = CountingBody(b"", 10 * MAX_BYTES)
    status, answer = post_raw(client, body, "video/mp4", content_length=10 * MAX_BYTES)
    assert status == 413 and answer["error"]["code"] == "video_too_large" and body.read_bytes == 0


def test_the_video_field_is_found_after_other_fields(client, shared_dir):
    video = (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()
    body = part("note", b"a field first") + part("video", video, "clip.mp4") + f"--{BOUNDARY}--\r\n".encode()
    answer = client.post("/api/v1/videos", data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert answer.status_code == 202, answer.get_json()
    assert client.get(answer.get_json()["status_url"]).get_json()["filename"] == "clip.mp4"


@pytest.mark.parametrize(
    "body",
    [part("note", b"no video here") + f"--{BOUNDARY}--\r\n".encode(), part("image", b"\xff\xd8", "x.jpg") + f"--{BOUNDARY}--\r\n".encode()],
)
def test_a_multipart_body_without_the_video_field_is_a_400(client, body):
    answer = client.post("/api/v1/videos", data=body, content_type=f"multipart/form-data; boundary={BOUNDARY}")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "missing_video"


def test_a_multipart_body_without_a_boundary_is_a_400(client):
    answer = client.post("/api/v1/videos", data=b"x", content_type="multipart/form-data")
    assert answer.status_code == 400


def test_an_upload_can_ask_for_blurred_faces(client, shared_dir):
    video = (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()
    created = {}
    for blur in ("true", "false"):
        answer = client.post(f"/api/v1/videos?filename=clip.mp4&blur_faces={blur}", data=video, content_type="video/mp4")
        assert answer.status_code == 202, answer.get_json()
        created[blur] = answer.get_json()["id"]
    with client.application.app_context():
        found = services().videos
        assert found.get(created["true"], owner=None).blur_faces is True
        assert found.get(created["false"], owner=None).blur_faces is False
    assert client.post("/api/v1/videos?blur_faces=perhaps", data=video, content_type="video/mp4").status_code == 400
