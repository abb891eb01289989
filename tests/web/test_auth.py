"""Auth as DESIGN.md §2 specifies it, on the app factory: API keys (401 without one, 403 with a wrong or revoked
one), videos per key (another key gets 404 and never sees them listed, in the API and on pages), pages that
sign in and keep a session with CSRF tokens, the Origin check, and rate limits (429 JSON with Retry-After)."""

from __future__ import annotations

import re

import pytest

from app import create_app
from emotion_detector.__main__ import main
from emotion_detector.accounts.keys import Keys
from emotion_detector.settings import Settings
from emotion_detector.videos.db import sessions
from emotion_detector.web import services

OWN_ORIGIN = "http://localhost"  # the Flask test client's host
# A websocket opening request (the test client has no socket to upgrade: what the checks answer is what counts).
HANDSHAKE = {
    "Upgrade": "websocket",
    "Connection": "Upgrade",
    "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
    "Sec-WebSocket-Version": "13",
}


def make_app(tmp_path, **config):
    database = f"sqlite:///{tmp_path / 'emotion-detector.db'}"  # this test's own (conftest's environment names a shared one)
    settings = {"model_server": "inprocess", "environment": "test", "database_url": database, "storage_dir": tmp_path / "videos"}
    return create_app({**settings, **config})


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path, auth="required")


def new_key(app, name: str) -> str:
    with app.app_context():
        return services().keys.create(name).secret


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def video_bytes(shared_dir) -> bytes:
    return (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()


def upload(client, video: bytes, headers: dict[str, str]) -> str:
    answer = client.post("/api/v1/videos?filename=clip.mp4", data=video, headers=headers)
    assert answer.status_code == 202, answer.get_json()
    return answer.get_json()["id"]


def csrf_token(client, path: str = "/signin") -> str:
    page = client.get(path).get_data(as_text=True)
    found = re.search(r'name="csrf-token" content="([^"]+)"', page)
    assert found, page
    return found.group(1)


def sign_in(client, secret: str) -> None:
    token = csrf_token(client)
    answer = client.post("/signin", data={"key": secret, "csrf_token": token, "next": "/videos"})
    assert answer.status_code == 302 and answer.headers["Location"] == "/videos", answer.get_data(as_text=True)


def test_production_requires_auth_by_default_and_development_does_not():
    assert Settings(environment="development").auth == "off"
    production = Settings(environment="production", secret_key="s" * 40, allow_insecure="sqlite,embedded_queue")
    assert production.auth == "required"


@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "unauthorized"),
        ({"Authorization": "Bearer "}, 401, "unauthorized"),
        ({"Authorization": "Bearer edk_not-a-real-key"}, 403, "forbidden"),
        ({"Authorization": "Bearer something-else"}, 403, "forbidden"),
    ],
)
def test_the_api_needs_a_valid_key(app, headers, status, code):
    client = app.test_client()
    paths = [("get", "/api/v1/videos"), ("post", "/api/v1/analyze"), ("delete", "/api/v1/videos/abc"), ("get", "/api/v1/devices")]
    paths += [("get", "/api/v1/events"), ("get", "/api/v1/events/stream")]
    for method, path in paths:
        answer = getattr(client, method)(path, headers=headers)
        assert answer.status_code == status and answer.is_json, (method, path)
        assert answer.get_json()["error"]["code"] == code
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_health_needs_no_key(app):
    assert app.test_client().get("/api/v1/health").status_code in (200, 503)  # never 401: probes have no key


def test_a_key_reaches_the_api_and_a_revoked_one_does_not(app, shared_dir):
    secret = new_key(app, "script")
    client = app.test_client()
    assert client.get("/api/v1/videos", headers=bearer(secret)).status_code == 200
    image = (shared_dir / "media" / "images").glob("*.jpg")
    answer = client.post("/api/v1/analyze", data=next(image).read_bytes(), headers=bearer(secret))
    assert answer.status_code == 200 and "faces" in answer.get_json()
    with app.app_context():
        key = services().keys.verify(secret)
        assert key is not None
        services().keys.revoke(key.id)
    answer = client.get("/api/v1/videos", headers=bearer(secret))
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "forbidden"


def test_two_keys_do_not_see_each_others_videos(app, video_bytes):
    alice, bob = new_key(app, "alice"), new_key(app, "bob")
    client = app.test_client()
    video_id = upload(client, video_bytes, bearer(alice))
    listed = client.get("/api/v1/videos", headers=bearer(alice)).get_json()["videos"]
    assert [video["id"] for video in listed] == [video_id]
    assert client.get("/api/v1/videos", headers=bearer(bob)).get_json()["videos"] == []
    for method, path in [
        ("get", f"/api/v1/videos/{video_id}"),
        ("get", f"/api/v1/videos/{video_id}/results"),
        ("get", f"/api/v1/videos/{video_id}/results.csv"),
        ("get", f"/api/v1/videos/{video_id}/annotated"),
        ("post", f"/api/v1/videos/{video_id}/cancel"),
        ("post", f"/api/v1/videos/{video_id}/retry"),
        ("delete", f"/api/v1/videos/{video_id}"),
    ]:
        answer = getattr(client, method)(path, headers=bearer(bob))
        assert answer.status_code == 404 and answer.get_json()["error"]["code"] == "not_found", (method, path)
    assert client.get(f"/api/v1/videos/{video_id}", headers=bearer(alice)).status_code == 200
    assert client.delete(f"/api/v1/videos/{video_id}", headers=bearer(alice)).status_code == 204


def test_pages_sign_in_with_a_key_and_show_only_its_videos(app, video_bytes):
    alice, bob = new_key(app, "alice"), new_key(app, "bob")
    video_id = upload(app.test_client(), video_bytes, bearer(alice))
    browser = app.test_client()
    answer = browser.get("/videos")
    assert answer.status_code == 302 and answer.headers["Location"] == "/signin?next=/videos"
    assert browser.get("/dashboard").headers["Location"] == "/signin?next=/dashboard"
    assert browser.get("/api/v1/videos").status_code == 401  # the page's own API calls too

    sign_in(browser, bob)
    assert browser.get("/videos").status_code == 200
    assert browser.get("/dashboard").status_code == 200 and browser.get("/api/v1/devices").status_code == 200
    assert browser.get(f"/videos/{video_id}").status_code == 404
    assert browser.get("/api/v1/videos").get_json()["videos"] == []

    owner = app.test_client()
    sign_in(owner, alice)
    page = owner.get(f"/videos/{video_id}")
    assert page.status_code == 200 and "clip.mp4" in page.get_data(as_text=True)
    assert [video["id"] for video in owner.get("/api/v1/videos").get_json()["videos"]] == [video_id]


def test_a_wrong_key_does_not_sign_in_and_the_form_needs_its_csrf_token(app):
    secret = new_key(app, "alice")
    browser = app.test_client()
    token = csrf_token(browser)
    answer = browser.post("/signin", data={"key": "edk_wrong", "csrf_token": token})
    assert answer.status_code == 403 and "unknown or revoked" in answer.get_data(as_text=True)
    assert browser.post("/signin", data={"key": secret}).status_code == 400  # no token: refused
    assert browser.get("/videos").status_code == 302


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example"])
def test_signing_in_never_redirects_off_the_site(app, target):
    secret = new_key(app, "alice")
    browser = app.test_client()
    answer = browser.post("/signin", data={"key": secret, "csrf_token": csrf_token(browser), "next": target})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


def test_session_requests_that_change_state_need_the_csrf_token(app, video_bytes):
    secret = new_key(app, "alice")
    browser = app.test_client()
    sign_in(browser, secret)
    video_id = upload(app.test_client(), video_bytes, bearer(secret))
    answer = browser.post(f"/api/v1/videos/{video_id}/cancel")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "csrf_failed"
    token = csrf_token(browser, "/videos")
    answer = browser.post(f"/api/v1/videos/{video_id}/cancel", headers={"X-CSRFToken": token})
    assert answer.status_code == 200 and answer.get_json()["status"] == "cancelled"
    # Signing out ends the session: the same cookie no longer reaches anything.
    assert browser.post("/signout", data={"csrf_token": token}).status_code == 302
    assert browser.get("/api/v1/videos").status_code == 401


def test_a_revoked_key_ends_its_sessions(app):
    secret = new_key(app, "alice")
    browser = app.test_client()
    sign_in(browser, secret)
    with app.app_context():
        services().keys.revoke(secret[:10])
    assert browser.get("/api/v1/videos").status_code == 401
    assert browser.get("/videos").status_code == 302


@pytest.mark.parametrize("auth", ["required", "off"])
def test_cross_site_requests_are_refused_whatever_the_auth_mode(tmp_path, video_bytes, auth):
    app = make_app(tmp_path, auth=auth, allowed_origins="https://partner.example")
    headers = bearer(new_key(app, "alice")) if auth == "required" else {}
    client = app.test_client()
    for origin in ["https://evil.example", "null", "http://localhost.evil.example"]:
        answer = client.post("/api/v1/videos", data=video_bytes, headers={**headers, "Origin": origin})
        assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "origin_not_allowed", origin
        answer = client.get("/ws/live", headers={**headers, **HANDSHAKE, "Origin": origin})
        assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "origin_not_allowed", origin
    assert not list((tmp_path / "videos").glob("*/*"))  # nothing was stored
    for origin in [OWN_ORIGIN, "https://partner.example", "https://PARTNER.example/"]:
        answer = client.post("/api/v1/analyze", data=b"not an image", headers={**headers, "Origin": origin})
        assert answer.status_code == 415, (origin, answer.get_json())  # past the check, refused as an image
    # Reads pass: the browser's same-origin policy keeps the answer from that page (no CORS headers here).
    assert client.get("/api/v1/videos", headers={**headers, "Origin": "https://evil.example"}).status_code == 200


def test_rate_limits_answer_429_json_with_retry_after(tmp_path, shared_dir):
    app = make_app(tmp_path, auth="required", rate_limit_analyze="3/minute")
    alice, bob = new_key(app, "alice"), new_key(app, "bob")
    client = app.test_client()
    image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()  # small: the limit is the point
    codes = [client.post("/api/v1/analyze", data=image, headers=bearer(alice)).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    answer = client.post("/api/v1/analyze", data=image, headers=bearer(alice))
    assert answer.status_code == 429 and answer.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(answer.headers["Retry-After"]) <= 60
    # The same address is limited too, whatever key it uses: a second key does not reset the count.
    assert client.post("/api/v1/analyze", data=image, headers=bearer(bob)).status_code == 429
    # Another address with another key is not.
    other = client.post("/api/v1/analyze", data=image, headers=bearer(bob), environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 200


def test_uploads_and_live_connections_are_rate_limited(tmp_path, video_bytes):
    app = make_app(tmp_path, rate_limit_upload="1/hour", rate_limit_live="1/minute")
    client = app.test_client()
    upload(client, video_bytes, {})
    answer = client.post("/api/v1/videos?filename=clip.mp4", data=video_bytes)
    assert answer.status_code == 429 and "Retry-After" in answer.headers
    handshake = HANDSHAKE
    client.get("/ws/live", headers=handshake)  # counted; the test client has no socket to upgrade, so no more
    answer = client.get("/ws/live", headers=handshake)
    assert answer.status_code == 429 and "Retry-After" in answer.headers


def test_keys_command_prints_a_key_once_and_stores_only_its_hash(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EMOTION_DATABASE_URL", f"sqlite:///{tmp_path / 'emotion-detector.db'}")
    assert main(["keys", "create", "ci script"]) == 0
    secret = capsys.readouterr().out.strip()
    assert secret.startswith("edk_") and len(secret) > 40
    settings = Settings()
    keys = Keys(sessions(settings.database_url))
    assert keys.verify(secret) is not None
    assert secret not in (tmp_path / "emotion-detector.db").read_bytes().decode("latin-1")
    assert main(["keys", "list"]) == 0
    assert "ci script" in capsys.readouterr().out and secret not in capsys.readouterr().out
    assert main(["keys", "revoke", secret[:10]]) == 0
    assert keys.verify(secret) is None
    assert main(["keys", "revoke", "nope"]) == 2


def test_videos_uploaded_while_sign_in_was_off_belong_to_the_first_key_made(tmp_path, monkeypatch, capsys, video_bytes):
    """Sign-in off: one local user, whose videos belong to no key. Once it is required, they were invisible to
    every key (issue 27); now the first key made takes them over, and `keys adopt` gives those uploaded later
    with sign-in off to another key."""
    monkeypatch.setenv("EMOTION_DATABASE_URL", f"sqlite:///{tmp_path / 'emotion-detector.db'}")
    laptop = make_app(tmp_path, auth="off")
    before = upload(laptop.test_client(), video_bytes, {})

    assert main(["keys", "create", "me"]) == 0
    captured = capsys.readouterr()
    mine = captured.out.strip()
    assert "the first key: 1 video uploaded while sign-in was off now belongs to it" in captured.err
    deployed = make_app(tmp_path, auth="required")
    colleague = new_key(deployed, "colleague")
    assert [v["id"] for v in deployed.test_client().get("/api/v1/videos", headers=bearer(mine)).get_json()["videos"]] == [before]
    assert deployed.test_client().get("/api/v1/videos", headers=bearer(colleague)).get_json()["videos"] == []
    browser = deployed.test_client()
    sign_in(browser, mine)
    assert browser.get(f"/videos/{before}").status_code == 200

    later = upload(laptop.test_client(), video_bytes, {})  # sign-in off again for a while
    with deployed.app_context():
        colleague_id = services().keys.verify(colleague).id
    assert main(["keys", "adopt", colleague_id]) == 0
    assert "1 video uploaded while sign-in was off now belongs to" in capsys.readouterr().out
    listed = deployed.test_client().get("/api/v1/videos", headers=bearer(colleague)).get_json()["videos"]
    assert [v["id"] for v in listed] == [later]
    assert main(["keys", "adopt", "edk_nope"]) == 2
