"""Auth as DESIGN.md §2 specifies it, on the app factory: API keys (401 without one, 403 with a wrong or revoked
one), videos per key (another key gets 404 and never sees them listed, in the API and on pages), pages that
sign in and keep a session with CSRF tokens, the Origin check, and rate limits (429 JSON with Retry-After)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy.orm import sessionmaker

from app import create_app
from emotion_detector.__main__ import main
from emotion_detector.accounts.keys import Keys
from emotion_detector.settings import Settings
from emotion_detector.videos.db import engine_for, sessions
from emotion_detector.web import services
from tests.conftest import free_port

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
        services().keys.revoke(key.key_id)
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


# Browsers drop tabs and newlines anywhere in a URL and control characters and spaces around it: "/\t/evil.example"
# is "//evil.example" to them, another site.
OFF_SITE_TARGETS = [
    "https://evil.example/",
    "//evil.example/x",
    "/\\evil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "/\r\n/evil.example",
    "\t//evil.example",
    " //evil.example",
    "/\x00/evil.example",
    "/\x0b/evil.example",
    "/\u3000/evil.example",
    "java\tscript:alert(1)",
    "https:/evil.example",
]


@pytest.mark.parametrize("target", OFF_SITE_TARGETS)
def test_signing_in_never_redirects_off_the_site(app, target):
    secret = new_key(app, "alice")
    browser = app.test_client()
    answer = browser.post("/signin", data={"key": secret, "csrf_token": csrf_token(browser), "next": target})
    assert answer.status_code == 302
    location = answer.headers["Location"]
    assert location.startswith("/") and not location.startswith(("//", "/\\")), location
    assert not any(ch.isspace() or not ch.isprintable() for ch in location), location


def test_a_phishing_link_through_the_sign_in_page_lands_on_this_site(app):
    """The attack as reported: a link to /signin?next=/%09/evil.example, then a genuine sign-in with the form it shows."""
    secret = new_key(app, "alice")
    browser = app.test_client()
    page = browser.get("/signin?next=/%09/evil.example").get_data(as_text=True)
    target = re.search(r'name="next" value="([^"]*)"', page).group(1)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
    answer = browser.post("/signin", data={"key": secret, "csrf_token": token, "next": target})
    assert answer.status_code == 302 and answer.headers["Location"] == "/"


@pytest.mark.parametrize("target", ["/videos\nX-Injected: 1", "/videos\r\nSet-Cookie: a=b", "/\n"])
def test_a_newline_in_next_is_no_server_error(app, target):
    secret = new_key(app, "alice")
    browser = app.test_client()
    assert browser.get("/signin", query_string={"next": target}).status_code == 200
    answer = browser.post("/signin", data={"key": secret, "csrf_token": csrf_token(browser), "next": target})
    assert answer.status_code == 302 and "\n" not in answer.headers["Location"] and "X-Injected" not in answer.headers


def test_a_path_on_this_site_with_its_query_is_kept(app):
    secret = new_key(app, "alice")
    browser = app.test_client()
    answer = browser.post("/signin", data={"key": secret, "csrf_token": csrf_token(browser), "next": "/videos?sort=new"})
    assert answer.headers["Location"] == "/videos?sort=new"


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


def copy_of(browser):
    """Another client holding a copy of this browser's session cookie (as a thief or a shared computer would)."""
    thief = browser.application.test_client()
    thief.set_cookie("session", browser.get_cookie("session").value)
    return thief


def test_signing_out_ends_the_session_on_the_server_not_only_in_the_browser(app):
    secret = new_key(app, "alice")
    browser = app.test_client()
    sign_in(browser, secret)
    copied = copy_of(browser)
    assert copied.get("/api/v1/videos").status_code == 200
    assert browser.post("/signout", data={"csrf_token": csrf_token(browser, "/videos")}).status_code == 302
    assert copied.get("/api/v1/videos").status_code == 401
    assert copied.get("/videos").status_code == 302


def test_sign_out_everywhere_ends_every_session_of_the_key_and_no_other(app):
    alice, bob = new_key(app, "alice"), new_key(app, "bob")
    laptop, phone, other = app.test_client(), app.test_client(), app.test_client()
    sign_in(laptop, alice)
    sign_in(phone, alice)
    sign_in(other, bob)
    assert "Sign out everywhere" in laptop.get("/videos").get_data(as_text=True)
    answer = laptop.post("/signout", data={"csrf_token": csrf_token(laptop, "/videos"), "everywhere": "1"})
    assert answer.status_code == 302
    assert laptop.get("/api/v1/videos").status_code == 401
    assert phone.get("/api/v1/videos").status_code == 401
    assert other.get("/api/v1/videos").status_code == 200
    assert app.test_client().get("/api/v1/videos", headers=bearer(alice)).status_code == 200  # the key itself still works


def test_a_session_ends_after_its_lifetime_whatever_the_cookie_says(tmp_path):
    app = make_app(tmp_path, auth="required", session_lifetime_s=1)
    secret = new_key(app, "alice")
    browser = app.test_client()
    sign_in(browser, secret)
    assert browser.get("/api/v1/videos").status_code == 200
    copied = copy_of(browser)
    time.sleep(1.1)
    assert browser.get("/api/v1/videos").status_code == 401
    assert copied.get("/api/v1/videos").status_code == 401


def test_the_session_cookie_expires_with_the_session_and_use_does_not_renew_it(tmp_path):
    app = make_app(tmp_path, auth="required", session_lifetime_s=3600)
    browser = app.test_client()
    token = csrf_token(browser)
    answer = browser.post("/signin", data={"key": new_key(app, "alice"), "csrf_token": token, "next": "/videos"})
    cookie = answer.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    expires = parsedate_to_datetime(re.search(r"Expires=([^;]+)", cookie).group(1))
    assert abs((expires - datetime.now(UTC)).total_seconds() - 3600) < 60
    assert "Set-Cookie" not in browser.get("/api/v1/videos").headers


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


# ---- keys and sessions through a database outage -----------------------------------------------------

UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:9/test?connect_timeout=1"  # nothing listens there


def cut_off_the_database(app) -> None:
    """From now on every query of this app fails to connect, as in an outage."""
    with app.app_context():
        unreachable = sessionmaker(engine_for(UNREACHABLE_DATABASE))
        services().keys.sessions = services().videos.sessions = unreachable


def test_a_database_outage_does_not_stop_image_and_live_analysis_of_keys_already_seen(tmp_path, shared_dir):
    app = make_app(tmp_path, auth="required", auth_cache_s=0)  # the database is asked every time it answers
    secret, unseen = new_key(app, "alice"), new_key(app, "bob")
    image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()
    client, browser = app.test_client(), app.test_client()
    assert client.post("/api/v1/analyze", data=image, headers=bearer(secret)).status_code == 200
    sign_in(browser, secret)

    cut_off_the_database(app)
    answer = client.post("/api/v1/analyze", data=image, headers=bearer(secret))
    assert answer.status_code == 200 and answer.get_json()["faces"]
    assert browser.get("/").status_code == 200  # the live page, signed in
    assert browser.post("/api/v1/analyze", data=image, headers={"X-CSRFToken": csrf_token(browser, "/")}).status_code == 200
    # What needs the database says so; a key never checked cannot be.
    answer = client.get("/api/v1/videos", headers=bearer(secret))
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "database_unavailable"
    answer = client.post("/api/v1/analyze", data=image, headers=bearer(unseen))
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "database_unavailable"


def test_keys_are_taken_on_trust_through_an_outage_only_for_the_grace_period(tmp_path, shared_dir):
    app = make_app(tmp_path, auth="required", auth_cache_s=0, auth_outage_grace_s=0)
    secret = new_key(app, "alice")
    client = app.test_client()
    assert client.get("/api/v1/devices", headers=bearer(secret)).status_code == 200
    cut_off_the_database(app)
    image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()
    assert client.post("/api/v1/analyze", data=image, headers=bearer(secret)).status_code == 503


def test_a_key_revoked_by_another_process_is_refused_within_auth_cache_s(tmp_path):
    app = make_app(tmp_path, auth="required", auth_cache_s=0.5)
    secret = new_key(app, "alice")
    client = app.test_client()
    assert client.get("/api/v1/videos", headers=bearer(secret)).status_code == 200
    cli = Keys(sessions(f"sqlite:///{tmp_path / 'emotion-detector.db'}"))  # what `emotion-detector keys revoke` uses
    cli.revoke(secret[:10])
    time.sleep(0.6)
    assert client.get("/api/v1/videos", headers=bearer(secret)).status_code == 403


# ---- what the public health check shows -----------------------------------------------------------------


def test_the_public_health_answer_is_status_only(app):
    answer = app.test_client().get("/api/v1/health")
    assert answer.status_code == 200 and answer.get_json() == {"status": "ok"}
    wrong = app.test_client().get("/api/v1/health", headers=bearer("edk_not-a-real-key"))
    assert wrong.status_code == 200 and wrong.get_json() == {"status": "ok"}  # probes are never refused


def test_the_public_health_answer_names_what_is_down_and_nothing_more(app):
    cut_off_the_database(app)
    answer = app.test_client().get("/api/v1/health")
    assert answer.status_code == 503 and answer.get_json() == {"status": "unavailable", "down": ["database"]}
    assert "Error" not in answer.get_data(as_text=True)  # no exception class names


@pytest.mark.parametrize("how", ["bearer", "session", "auth off"])
def test_health_details_go_to_key_holders_and_without_auth(tmp_path, how):
    app = make_app(tmp_path, auth="off" if how == "auth off" else "required")
    client = app.test_client()
    headers = {}
    if how == "bearer":
        headers = bearer(new_key(app, "monitor"))
    elif how == "session":
        sign_in(client, new_key(app, "alice"))
    body = client.get("/api/v1/health", headers=headers).get_json()
    assert body["status"] == "ok" and body["database"] == "ok" and body["queue"] == "ok" and body["problems"] == []
    assert set(body["models"]) == {"emotion", "age_gender"}
    detector = body["detector"]
    assert detector["name"] == "centerface" and detector["min_face_px"] == 20 and detector["min_face_px_up_to_pixels"] == 5_120_000
    assert "/" not in detector["model"] and detector["model"].endswith(".onnx")  # the file, not where it is installed


def test_health_details_during_an_outage_say_why_to_holders_only(app):
    secret = new_key(app, "monitor")
    client = app.test_client()
    assert client.get("/api/v1/health", headers=bearer(secret)).status_code == 200  # the key is checked once
    cut_off_the_database(app)
    body = client.get("/api/v1/health", headers=bearer(secret)).get_json()
    assert body["down"] == ["database"] and body["database"].startswith("down: ") and body["problems"]
    unchecked = client.get("/api/v1/health", headers=bearer("edk_unknown")).get_json()
    assert unchecked == {"status": "unavailable", "down": ["database"]}  # a key that cannot be checked now counts as none


def test_with_the_rate_limit_store_down_limits_count_in_memory_and_nothing_fails(tmp_path, shared_dir):
    """Redis (the counters' store in production) unreachable: answers go on, limited per process meanwhile."""
    app = make_app(tmp_path, rate_limit_storage_url=f"redis://127.0.0.1:{free_port()}/0", rate_limit_analyze="2/minute")
    client = app.test_client()
    image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()
    codes = [client.post("/api/v1/analyze", data=image).status_code for _ in range(3)]
    assert codes == [200, 200, 429]  # the live socket's handshake: tests/faults/test_brokers.py


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
        colleague_id = services().keys.verify(colleague).key_id
    assert main(["keys", "adopt", colleague_id]) == 0
    assert "1 video uploaded while sign-in was off now belongs to" in capsys.readouterr().out
    listed = deployed.test_client().get("/api/v1/videos", headers=bearer(colleague)).get_json()["videos"]
    assert [v["id"] for v in listed] == [later]
    assert main(["keys", "adopt", "edk_nope"]) == 2
