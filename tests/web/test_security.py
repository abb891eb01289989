"""What every response carries (security headers), JSON errors for anything under /api/, bounds on numeric
parameters, and outages said as outages (503 naming the database or the queue), on the app factory."""

from __future__ import annotations

import contextlib
import time
import uuid

import psycopg
import pytest
from sqlalchemy.orm import sessionmaker

from app import create_app
from emotion_detector.videos.db import engine_for
from emotion_detector.web import services
from emotion_detector.web.security import SECURITY_HEADERS
from tests.videos.conftest import POSTGRES_ADMIN, new_postgres_database

# A PostgreSQL address where nothing listens: connecting fails at once (no process is started).
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:9/test?connect_timeout=1"


@pytest.fixture
def app(tmp_path):
    return create_app({"model_server": "inprocess", "environment": "test", "instance_dir": tmp_path})


@pytest.mark.parametrize("path", ["/", "/videos", "/api/v1/health", "/api/v1/videos", "/static/live.js", "/no-such-page"])
def test_every_response_carries_the_security_headers(app, path):
    answer = app.test_client().get(path)
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, (path, name)
    assert "frame-ancestors 'none'" in answer.headers["Content-Security-Policy"]
    assert "unsafe-inline" not in answer.headers["Content-Security-Policy"]


def test_an_unknown_api_path_is_a_json_404(app):
    answer = app.test_client().get("/api/v1/no-such-thing")
    assert answer.status_code == 404 and answer.is_json
    assert answer.get_json()["error"]["code"] == "not_found"


def test_a_wrong_method_is_a_json_405_that_says_what_is_allowed(app):
    answer = app.test_client().put("/api/v1/analyze")
    assert answer.status_code == 405 and answer.is_json
    assert answer.get_json()["error"]["code"] == "method_not_allowed"
    assert "POST" in answer.headers["Allow"]


def test_pages_keep_html_errors(app):
    answer = app.test_client().get("/no-such-page")
    assert answer.status_code == 404 and not answer.is_json


@pytest.mark.parametrize("every", ["0", "-1", "1e23", "2.5", "100000000000000000000000", "1001", "", "ten"])
def test_every_n_frames_out_of_bounds_is_a_400_before_anything_is_stored(app, tmp_path, every):
    answer = app.test_client().post(f"/api/v1/videos?every_n_frames={every}", data=b"not read")
    assert answer.status_code == 400, answer.get_json()
    assert "every_n_frames" in answer.get_json()["error"]["message"]
    assert not list((tmp_path / "videos").glob("*/*"))


def test_health_is_503_and_names_the_database_when_it_is_down(app):
    with app.app_context():
        services().videos.sessions = sessionmaker(engine_for(UNREACHABLE_DATABASE))
    answer = app.test_client().get("/api/v1/health")
    assert answer.status_code == 503
    body = answer.get_json()
    assert body["status"] == "unavailable" and body["down"] == ["database"]
    assert body["database"].startswith("down") and body["queue"] == "ok"


def test_a_database_outage_is_a_503_database_unavailable_not_a_500(app):
    with app.app_context():
        services().videos.sessions = sessionmaker(engine_for(UNREACHABLE_DATABASE))
    answer = app.test_client().get("/api/v1/videos")
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "database_unavailable"
    assert answer.headers["Retry-After"]


def test_health_reports_database_and_queue_when_all_is_well(app):
    body = app.test_client().get("/api/v1/health").get_json()
    assert (body["status"], body["database"], body["queue"]) == ("ok", "ok", "ok")


def test_the_notices_say_what_is_stored_and_for_how_long(tmp_path):
    app = create_app({"model_server": "inprocess", "environment": "test", "instance_dir": tmp_path, "video_retention_days": 7})
    page = app.test_client().get("/videos").get_data(as_text=True)
    notice = " ".join(page.split("storage-notice", 1)[1].split("</p>", 1)[0].split())
    assert "the uploaded video" in notice and "annotated copy" in notice
    assert "deleted automatically 7 days after the upload" in notice
    live = " ".join(app.test_client().get("/").get_data(as_text=True).split())
    assert "Live webcam frames are analysed in memory and never stored or logged" in live
    assert "never stored." not in live  # the old, untrue blanket promise


def test_the_app_starts_without_its_database_serves_analysis_and_migrates_once_it_is_back(tmp_path, shared_dir):
    with contextlib.ExitStack() as stack:
        # A database that does not exist yet: connecting to it fails as to a server that is down.
        name = f"emotion_test_{uuid.uuid4().hex[:10]}"
        stack.callback(drop_database, name)
        app = create_app(
            {
                "model_server": "inprocess",
                "environment": "test",
                "database_url": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
                "storage_dir": tmp_path / "videos",
            }
        )
        client = app.test_client()
        image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()
        assert client.post("/api/v1/analyze", data=image).status_code == 200
        assert client.get("/").status_code == 200
        health = client.get("/api/v1/health")
        assert health.status_code == 503 and health.get_json()["down"] == ["database"]
        answer = client.get("/api/v1/videos")
        assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "database_unavailable"

        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        deadline = time.monotonic() + 20
        while client.get("/api/v1/health").status_code != 200:
            assert time.monotonic() < deadline, client.get("/api/v1/health").get_json()
            time.sleep(0.2)
        video = (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()
        assert client.post("/api/v1/videos?filename=clip.mp4", data=video).status_code == 202
        assert len(client.get("/api/v1/videos").get_json()["videos"]) == 1


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def postgres_app(tmp_path_factory):
    """The production database: PostgreSQL refuses a NUL byte in text, SQLite takes it."""
    with new_postgres_database() as url:
        yield create_app(
            {"model_server": "inprocess", "environment": "test", "database_url": url, "storage_dir": tmp_path_factory.mktemp("videos")}
        )


BAD_IDS = ["%00", "abc%00def", "0" * 31 + "%00", "%C0%80", "x" * 5000, "..%2F..%2Fetc", "ABCDEF0123456789ABCDEF0123456789"]


@pytest.mark.parametrize("bad_id", BAD_IDS)
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/videos/{}"),
        ("get", "/api/v1/videos/{}/results"),
        ("get", "/api/v1/videos/{}/results.csv"),
        ("get", "/api/v1/videos/{}/annotated"),
        ("get", "/api/v1/videos/{}/report.html"),
        ("get", "/api/v1/videos/{}/report.pdf"),
        ("post", "/api/v1/videos/{}/cancel"),
        ("post", "/api/v1/videos/{}/retry"),
        ("delete", "/api/v1/videos/{}"),
        ("get", "/api/v1/devices/{}/mix"),
    ],
)
def test_a_malformed_id_is_a_404_before_it_reaches_the_database(postgres_app, method, path, bad_id, caplog):
    answer = getattr(postgres_app.test_client(), method)(path.format(bad_id))
    assert answer.status_code == 404 and answer.is_json, answer.get_data(as_text=True)[:200]
    assert answer.get_json()["error"]["code"] == "not_found" and "Retry-After" not in answer.headers
    assert "database error" not in caplog.text


def test_a_malformed_id_on_a_page_is_a_404_page(postgres_app):
    answer = postgres_app.test_client().get("/videos/abc%00def")
    assert answer.status_code == 404 and not answer.is_json


def test_a_full_disk_during_an_upload_is_a_507_storage_full_and_leaves_nothing_behind(tmp_path, shared_dir, monkeypatch):
    """/dev/full answers every write with ENOSPC, as a full disk does: the upload's file is made to be it
    (tests/faults: a real full file system)."""
    import emotion_detector.videos.service as service_module

    database = f"sqlite:///{tmp_path / 'videos.db'}"
    app = create_app({"model_server": "inprocess", "environment": "test", "database_url": database, "storage_dir": tmp_path / "videos"})
    fixed = uuid.UUID(int=0xFEED)
    monkeypatch.setattr(service_module.uuid, "uuid4", lambda: fixed)
    incoming = tmp_path / "videos" / ".incoming"
    incoming.mkdir(parents=True)
    (incoming / f"{fixed.hex}.part").symlink_to("/dev/full")
    video = (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()
    answer = app.test_client().post("/api/v1/videos?filename=clip.mp4", data=video)
    assert answer.status_code == 507, answer.get_data(as_text=True)[:300]
    error = answer.get_json()["error"]
    assert error["code"] == "storage_full" and "storage is full" in error["message"] and "not stored" in error["message"]
    assert [path.name for path in (tmp_path / "videos").rglob("*")] == [".incoming"]  # the partial file is gone
    assert app.test_client().get("/api/v1/videos").get_json()["videos"] == []


def production_app(tmp_path):
    return create_app(
        {
            "environment": "production",
            "secret_key": "s" * 40,
            "allow_insecure": "sqlite,embedded_queue",
            "model_server": "inprocess",
            "database_url": f"sqlite:///{tmp_path / 'videos.db'}",
            "storage_dir": tmp_path / "videos",
        }
    )


@pytest.mark.parametrize("path", ["/signin", "/api/v1/health", "/api/v1/videos", "/static/live.js", "/no-such-page"])
def test_production_answers_tell_browsers_to_use_https_only(tmp_path, path):
    answer = production_app(tmp_path).test_client().get(path)
    assert answer.headers["Strict-Transport-Security"] == "max-age=63072000; includeSubDomains"


def test_a_laptop_sends_no_hsts(app):
    assert "Strict-Transport-Security" not in app.test_client().get("/").headers  # http://localhost stays usable


def test_pages_and_api_answers_are_not_kept_by_caches_static_files_are(app, shared_dir):
    client = app.test_client()
    video = (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()
    video_id = client.post("/api/v1/videos?filename=clip.mp4", data=video).get_json()["id"]
    for path in ["/", "/videos", f"/videos/{video_id}", "/images", "/dashboard", "/signin", "/api/v1/videos", f"/api/v1/videos/{video_id}"]:
        assert client.get(path).headers.get("Cache-Control") == "no-store", path
    for path in [f"/api/v1/videos/{video_id}/results", f"/api/v1/videos/{video_id}/report.html", "/api/v1/health", "/api/v1/no-such"]:
        assert client.get(path).headers.get("Cache-Control") == "no-store", path  # answers and errors alike
    assert "no-store" not in client.get("/static/live.js").headers.get("Cache-Control", "")


def test_retry_after_comes_only_with_429_and_503(tmp_path, shared_dir):
    app = create_app({"model_server": "inprocess", "environment": "test", "instance_dir": tmp_path, "rate_limit_analyze": "2/minute"})
    client = app.test_client()
    image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()
    for _ in range(2):
        answer = client.post("/api/v1/analyze", data=image)
        assert answer.status_code == 200 and "Retry-After" not in answer.headers
        assert answer.headers["X-RateLimit-Remaining"]  # the limit's headers stay
    assert client.post("/api/v1/analyze", data=b"not an image").status_code == 429
    answer = client.post("/api/v1/analyze", data=image)
    assert answer.status_code == 429 and int(answer.headers["Retry-After"]) > 0
