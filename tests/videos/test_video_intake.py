"""Uploads that are not usable videos are refused with a clear error, and leave nothing behind."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from tests.videos.conftest import VideoStack, make_stack

pytestmark = pytest.mark.slow  # uploads to the web app under gunicorn

MAX_BYTES = 2_000_000


@pytest.fixture(scope="module")
def stack(request, model_server, tmp_path_factory) -> VideoStack:
    running = make_stack("embedded", tmp_path_factory.mktemp("intake"), model_server, request, video_max_bytes=str(MAX_BYTES))
    yield running
    running.stop()


def left_behind(stack: VideoStack) -> list[Path]:
    return [path for path in stack.storage_dir.rglob("*") if path.is_file()] if stack.storage_dir.exists() else []


def refused(stack: VideoStack, name: str, content: bytes) -> dict:
    answer = requests.post(stack.api, files={"video": (name, content, "video/mp4")}, timeout=60)
    assert 400 <= answer.status_code < 500, answer.text
    assert left_behind(stack) == []
    assert requests.get(stack.api, timeout=10).json()["videos"] == []
    return {"status": answer.status_code, **answer.json()["error"]}


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
    answer = requests.post(stack.api, files={"file": ("x.mp4", b"abc")}, timeout=10)
    assert answer.status_code == 400 and answer.json()["error"]["code"] == "missing_video"


def test_unknown_ids_are_404(stack):
    for path in ("", "/results", "/results.csv", "/annotated"):
        answer = requests.get(f"{stack.api}/0123456789abcdef{path}", timeout=10)
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "not_found"
