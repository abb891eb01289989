"""POST /api/v1/analyze and health, on the app factory with the models in process (and a model server for
what is about one); bad input gets clear 4xx."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest

from app import create_app
from emotion_detector.labels import EMOTIONS
from emotion_detector.settings import Settings
from tests.conftest import YUNET, free_port, start_thread_model_server
from tests.test_frames import jpeg_with_size, png_header_only


@pytest.fixture(scope="module")
def client():
    app = create_app({"model_server": "inprocess", "environment": "test"})  # the default detector
    return app.test_client()


def image(shared_dir, name: str) -> bytes:
    return (shared_dir / "media" / "images" / name).read_bytes()


def smaller(data: bytes, side_px: int) -> bytes:
    """The picture at most ``side_px`` wide or high (a 5-MP photo takes seconds to search on a small CPU)."""
    picture = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    scale = min(1.0, side_px / max(picture.shape[:2]))
    return cv2.imencode(".jpg", cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))[1].tobytes()


@pytest.mark.parametrize(
    ("name", "faces"), [("two_people.jpg", 2), ("single_face.jpg", 1), ("multi_face.jpg", 5), ("BWPictureHuman.jpg", 0)]
)
def test_analyze_finds_every_face(client, shared_dir, name, faces):
    data = smaller(image(shared_dir, name), 1000)
    answer = client.post("/api/v1/analyze", data={"image": (io.BytesIO(data), name)}, content_type="multipart/form-data")
    assert answer.status_code == 200, answer.get_json()
    body = answer.get_json()
    assert len(body["faces"]) == faces
    for face in body["faces"]:
        assert "id" not in face  # single images are not tracked
        assert face["emotion"]["label"] in EMOTIONS
        assert 0 <= face["box"][0] < face["box"][2] <= body["width"]
    assert body["timing_ms"]["total"] > 0
    assert body["detection"] == {"detector": "centerface", "min_face_px": 20.0}  # which detector, from which size
    # An empty answer says why: the smallest face looked for, and what to try.
    assert (body.get("message") or "") == (
        ""
        if faces
        else "No faces found. Faces smaller than 20 px high are not looked for: try a larger picture, or a closer view of the faces."
    )


def test_a_group_far_from_the_camera_is_found_face_by_face(client, shared_dir):
    """The five-person photo shrunk so that its faces are about 22 px high, in the middle of a large picture."""
    group = cv2.imread(str(shared_dir / "media" / "images" / "multi_face.jpg"))
    far = np.zeros((720, 1280, 3), np.uint8)
    small = cv2.resize(group, None, fx=0.18, fy=0.18, interpolation=cv2.INTER_AREA)  # faces 98-138 px -> 18-25 px
    far[300 : 300 + small.shape[0], 540 : 540 + small.shape[1]] = small
    answer = client.post("/api/v1/analyze", data=cv2.imencode(".png", far)[1].tobytes())
    assert answer.status_code == 200 and len(answer.get_json()["faces"]) == 5


def test_raw_body_works_whatever_the_content_type_says(client, shared_dir):
    answer = client.post("/api/v1/analyze", data=image(shared_dir, "obama_small.jpg"), content_type="application/x-www-form-urlencoded")
    assert answer.status_code == 200 and len(answer.get_json()["faces"]) == 1


def test_detect_false_treats_the_image_as_one_face_crop(client, shared_dir):
    answer = client.post("/api/v1/analyze?detect=false", data=image(shared_dir, "BWPictureHuman.jpg"))
    body = answer.get_json()
    assert answer.status_code == 200
    assert len(body["faces"]) == 1 and body["faces"][0]["box"] == [0, 0, body["width"], body["height"]]


@pytest.mark.parametrize(
    ("make", "status", "code"),
    [
        (lambda jpeg: b"", 400, "empty_frame"),
        (lambda jpeg: b"%PDF-1.7 not an image", 415, "unsupported_format"),
        (lambda jpeg: jpeg[: len(jpeg) // 3], 400, "truncated_frame"),
        (lambda jpeg: jpeg_with_size(jpeg, 20000, 20000), 413, "image_too_large"),
        (lambda jpeg: jpeg + b"\0" * (30 * 1024 * 1024), 413, "payload_too_large"),
        (lambda jpeg: b"GIF89a" + b"\0" * 100, 415, "unsupported_format"),
        (lambda jpeg: jpeg_with_size(jpeg, 10_001, 10), 413, "image_too_large"),
        (lambda jpeg: png_header_only(7_000, 7_000), 413, "image_too_large"),  # a decompression bomb's header
        (lambda jpeg: png_header_only(640, 480), 400, "truncated_frame"),
        (lambda jpeg: jpeg[:40], 400, "corrupt_frame"),
    ],
)
def test_bad_images_get_clear_errors(client, shared_dir, make, status, code):
    answer = client.post("/api/v1/analyze", data=make(image(shared_dir, "single_face.jpg")), content_type="image/jpeg")
    assert answer.status_code == status
    assert answer.get_json()["error"]["code"] == code
    assert answer.get_json()["error"]["message"]


@pytest.mark.parametrize(("height", "width"), [(10, 10000), (10000, 10), (1, 1), (3, 5000)])
def test_images_of_any_aspect_ratio_are_analysed(client, height, width):
    flat = cv2.imencode(".png", np.full((height, width, 3), 100, np.uint8))[1].tobytes()
    answer = client.post("/api/v1/analyze", data=flat, content_type="image/png")
    assert answer.status_code == 200, answer.get_data(as_text=True)[:500]
    assert answer.get_json()["faces"] == [] and (answer.get_json()["width"], answer.get_json()["height"]) == (width, height)


def test_an_unexpected_error_is_a_json_500(client, monkeypatch):
    from emotion_detector.web import services

    with client.application.app_context():
        monkeypatch.setattr(services().analyzer, "analyze_image", lambda *args, **kwargs: 1 / 0)
    answer = client.post("/api/v1/analyze", data=b"anything")
    assert answer.status_code == 500 and answer.get_json()["error"]["code"] == "internal_error"


def test_multipart_without_the_image_field(client):
    answer = client.post("/api/v1/analyze", data={"file": (io.BytesIO(b"x"), "x.jpg")}, content_type="multipart/form-data")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "missing_image"


def test_model_server_down_is_a_503_not_a_crash(shared_dir):
    app = create_app({"model_server": f"127.0.0.1:{free_port()}", "detector": "yunet", "yunet_path": YUNET, "model_server_timeout_s": 1.0})
    client = app.test_client()
    answer = client.post("/api/v1/analyze", data=image(shared_dir, "obama.jpg"))
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "model_unavailable"
    assert client.get("/api/v1/health").status_code == 503


def test_health_notices_a_model_server_that_went_away(shared_dir):
    server = start_thread_model_server()
    client = create_app({"model_server": server.grpc_target, "model_server_timeout_s": 1.0}).test_client()
    try:
        assert client.get("/api/v1/health").status_code == 200
    finally:
        server.server.stop(grace=None).wait()
    answer = client.get("/api/v1/health")
    assert answer.status_code == 503 and answer.get_json()["status"] == "unavailable"


def test_health_reports_detector_and_model_versions(client):
    body = client.get("/api/v1/health").get_json()
    assert body["status"] == "ok" and body["problems"] == []
    assert body["detector"]["name"] == "centerface" and not body["detector"]["degraded"]
    # The smallest face looked for, and up to which picture size (larger ones are searched from a larger face).
    assert body["detector"]["min_face_px"] == 20 and body["detector"]["min_face_px_up_to_pixels"] == 5_120_000
    assert set(body["models"]) == {"emotion", "age_gender"}
    # Where each network runs (this machine's ONNX Runtime has no GPU provider).
    assert body["detector"]["execution_provider"] == "cpu"
    assert body["model_execution_providers"] == {"emotion": "cpu", "age_gender": "cpu"}


@pytest.mark.parametrize("detector", ["yunet", "blazeface", "blazeface_full_range"])
def test_the_other_detectors_find_the_same_faces(shared_dir, detector):
    app = create_app({"model_server": "inprocess", "detector": detector, "yunet_path": YUNET})
    answer = app.test_client().post("/api/v1/analyze", data=image(shared_dir, "two_people.jpg"))
    assert answer.status_code == 200 and len(answer.get_json()["faces"]) == 2


def test_the_haar_fallback_is_flagged_as_degraded_in_health_and_on_every_page():
    client = create_app({"model_server": "inprocess", "detector": "haar"}).test_client()
    body = client.get("/api/v1/health").get_json()
    assert body["status"] == "degraded" and body["detector"]["degraded"] and body["problems"]
    for page in ("/", "/videos"):
        assert 'id="detector-degraded"' in client.get(page).get_data(as_text=True), page
    default = create_app({"model_server": "inprocess"}).test_client()
    assert 'id="detector-degraded"' not in default.get("/").get_data(as_text=True)


def test_production_refuses_the_development_secret():
    with pytest.raises(ValueError, match="EMOTION_SECRET_KEY"):
        Settings(environment="production")


PRODUCTION = {
    "environment": "production",
    "secret_key": "k" * 32,
    "database_url": "postgresql+psycopg://app@db/app",
    "broker_url": "redis://queue:6379/0",
    "model_server": "model.internal:443",
    "model_server_tls": True,
}


def test_production_accepts_a_long_key_postgresql_redis_and_a_model_server_over_tls():
    assert Settings(**PRODUCTION).environment == "production"
    assert Settings(**{**PRODUCTION, "model_server": "localhost:8500", "model_server_tls": False}).model_server == "localhost:8500"


@pytest.mark.parametrize(
    ("change", "refusal", "allowance"),
    [
        ({"secret_key": "k" * 31}, "secret key under 32", "short_secret_key"),
        ({"database_url": "sqlite:///x.db"}, "SQLite", "sqlite"),
        ({"broker_url": "sqla+sqlite:///q.db"}, "embedded job queue", "embedded_queue"),
        ({"model_server_tls": False}, "remote model server without TLS", "plaintext_model_server"),
    ],
)
def test_production_refuses_each_insecure_choice_unless_it_is_explicitly_allowed(monkeypatch, change, refusal, allowance):
    with pytest.raises(ValueError, match=f"{refusal}.*EMOTION_ALLOW_INSECURE={allowance}"):
        Settings(**{**PRODUCTION, **change})
    monkeypatch.setenv("EMOTION_ALLOW_INSECURE", f"{allowance}, sqlite")  # comma-separated, as an operator writes it
    assert Settings(**{**PRODUCTION, **change}).environment == "production"
