"""Uploads that are not usable videos are refused with a clear error, and leave nothing behind (the app
factory on a temporary database and folder; nothing is queued, so no worker is needed)."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
import pytest

from app import create_app
from tests.videos.conftest import embedded_settings

MAX_BYTES = 2_000_000
API = "/api/v1/videos"


@dataclass(frozen=True)
class Intake:
    client: object  # flask.testing.FlaskClient
    storage_dir: Path
    api: str = API


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Intake:
    tmp = tmp_path_factory.mktemp("intake")
    return Intake(create_app(embedded_settings(tmp, video_max_bytes=MAX_BYTES)).test_client(), tmp / "storage")


def left_behind(stack: Intake) -> list[Path]:
    return [path for path in stack.storage_dir.rglob("*") if path.is_file()] if stack.storage_dir.exists() else []


def refused(stack: Intake, name: str, content: bytes) -> dict:
    answer = stack.client.post(stack.api, data={"video": (io.BytesIO(content), name, "video/mp4")}, content_type="multipart/form-data")
    assert 400 <= answer.status_code < 500, answer.get_data(as_text=True)
    assert left_behind(stack) == []
    assert stack.client.get(stack.api).get_json()["videos"] == []
    return {"status": answer.status_code, **answer.get_json()["error"]}


def test_a_text_file_named_like_a_video_is_refused(stack):
    error = refused(stack, "holiday.mp4", b"this is a shopping list, not a video\n" * 200)
    assert error["status"] == 415 and error["code"] == "not_a_video"


def test_a_still_image_is_not_a_video(stack, shared_dir):
    image = next((shared_dir / "media" / "images").glob("*.jpg"))
    error = refused(stack, "photo.mp4", image.read_bytes())
    assert error["status"] == 415


def test_a_truncated_video_is_refused(stack, shared_dir):
    whole = (shared_dir / "media" / "videos" / "head-pose-face-detection-female-and-male.mp4").read_bytes()
    error = refused(stack, "cut.mp4", whole[: len(whole) // 2])
    assert error["code"] in ("truncated_video", "corrupt_video", "not_a_video")
    assert "video" in error["message"]


def test_an_oversized_upload_is_refused(stack, shared_dir):
    big = (shared_dir / "media" / "videos" / "noface_face.mov").read_bytes()
    assert len(big) > MAX_BYTES
    error = refused(stack, "big.mov", big)
    assert error["status"] == 413 and error["code"] == "video_too_large"
    assert str(MAX_BYTES) in error["message"]


def test_an_empty_upload_and_a_missing_field_are_refused(stack):
    assert refused(stack, "empty.mp4", b"")["code"] == "empty_upload"
    answer = stack.client.post(stack.api, data={"file": (io.BytesIO(b"abc"), "x.mp4")}, content_type="multipart/form-data")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "missing_video"


def test_unknown_ids_are_404(stack):
    for path in ("", "/results", "/results.csv", "/annotated"):
        answer = stack.client.get(f"{stack.api}/0123456789abcdef{path}")
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found"


def test_frames_over_the_pixel_limit_are_refused(stack, tmp_path):
    path = tmp_path / "huge.mp4"  # 4608x2592: 12 M pixels per frame, over the 4096x2160 default
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 4608, 2592, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((2592, 4608, 3), np.uint8), format="bgr24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    error = refused(stack, "huge.mp4", path.read_bytes())
    assert error["status"] == 413 and error["code"] == "video_too_large"
    assert "4608x2592" in error["message"] and "pixels per frame" in error["message"]
