"""Every state-changing route as a signed-in page sends it (the session cookie, no API key): multipart and raw
bodies, with and without the page's CSRF token (the X-CSRFToken header its scripts send, or the field of the
sign-out form), and from a foreign Origin. A page's upload must reach its view whole: the CSRF check reads no
body (issue 27: it parsed the multipart form, and the upload view then found no video)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest

from tests.web.test_auth import bearer, csrf_token, make_app, new_key, sign_in, upload

FOREIGN_ORIGIN = "https://evil.example"


@dataclass(frozen=True)
class Route:
    name: str
    method: str
    path: str  # {video} is a video of the signed-in key
    body: str  # "multipart", "raw", "form" or "none"
    ok_status: int


ROUTES = [
    Route("analyze, multipart", "post", "/api/v1/analyze", "multipart", 200),
    Route("analyze, raw body", "post", "/api/v1/analyze", "raw", 200),
    Route("upload, multipart (the page's form)", "post", "/api/v1/videos", "multipart", 202),
    Route("upload, raw body", "post", "/api/v1/videos?filename=clip.mp4", "raw", 202),
    Route("cancel", "post", "/api/v1/videos/{video}/cancel", "none", 200),
    Route("retry", "post", "/api/v1/videos/{video}/retry", "none", 202),
    Route("delete", "delete", "/api/v1/videos/{video}", "none", 204),
    Route("sign out", "post", "/signout", "form", 302),
]


@pytest.fixture
def app(tmp_path):
    return make_app(tmp_path, auth="required")


@pytest.fixture
def media(shared_dir) -> dict[str, bytes]:
    return {
        "image": (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes(),
        "video": (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes(),
    }


def send(client, route: Route, media: dict[str, bytes], video_id: str, headers: dict[str, str], form_token: str | None = None):
    path = route.path.format(video=video_id)
    field = "image" if "analyze" in path else "video"
    kwargs: dict = {"headers": headers}
    if route.body == "multipart":
        data: dict = {field: (io.BytesIO(media[field]), f"clip.{'jpg' if field == 'image' else 'mp4'}")}
        if form_token is not None:
            data["csrf_token"] = form_token
        kwargs |= {"data": data, "content_type": "multipart/form-data"}
    elif route.body == "raw":
        kwargs["data"] = media[field]
    elif route.body == "form":
        kwargs["data"] = {"csrf_token": form_token} if form_token is not None else {}
    return getattr(client, route.method)(path, **kwargs)


def signed_in(app) -> tuple[object, str, str]:
    """A browser signed in with a key, the page's CSRF token, and the key (to make videos with)."""
    secret = new_key(app, "alice")
    browser = app.test_client()
    sign_in(browser, secret)
    return browser, csrf_token(browser, "/videos"), secret


def a_video(app, media, secret: str, route: Route) -> str:
    """A video of the signed-in key, in the state the route acts on (retry: a cancelled one)."""
    video_id = upload(app.test_client(), media["video"], bearer(secret))
    if route.name == "retry":
        assert app.test_client().post(f"/api/v1/videos/{video_id}/cancel", headers=bearer(secret)).status_code == 200
    return video_id


def stored_videos(tmp_path) -> int:
    return len([p for p in (tmp_path / "videos").glob("*/*") if p.is_file()])


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_a_signed_in_page_reaches_every_state_changing_route_with_its_csrf_token(app, media, route):
    browser, token, secret = signed_in(app)
    video_id = a_video(app, media, secret, route)
    if route.body == "form":  # a form posts its token as a field, as base.html's sign-out button does
        answer = send(browser, route, media, video_id, {}, form_token=token)
    else:
        answer = send(browser, route, media, video_id, {"X-CSRFToken": token})
    assert answer.status_code == route.ok_status, (route.name, answer.get_data(as_text=True)[:300])
    if route.name.startswith("upload"):
        created = answer.get_json()
        assert browser.get(created["status_url"]).get_json()["status"] in ("queued", "running")
    if route.name == "analyze, multipart":
        assert len(answer.get_json()["faces"]) == 1


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_without_the_csrf_token_a_session_request_is_refused_and_changes_nothing(app, media, route, tmp_path):
    browser, _token, secret = signed_in(app)
    video_id = a_video(app, media, secret, route)
    stored = stored_videos(tmp_path)
    answer = send(browser, route, media, video_id, {})
    assert answer.status_code == 400, (route.name, answer.get_data(as_text=True)[:300])
    if route.path.startswith("/api/"):
        assert answer.get_json()["error"]["code"] == "csrf_failed"
        assert "Reload the page" in answer.get_json()["error"]["message"]
    assert stored_videos(tmp_path) == stored  # no upload was kept
    assert browser.get(f"/api/v1/videos/{video_id}").status_code == 200  # not deleted
    assert browser.get("/api/v1/videos").status_code == 200  # still signed in


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_a_token_from_another_session_is_refused(app, media, route):
    browser, _token, secret = signed_in(app)
    other_token = csrf_token(app.test_client(), "/signin")  # a valid token, of another browser's session
    video_id = a_video(app, media, secret, route)
    answer = send(browser, route, media, video_id, {"X-CSRFToken": other_token}, form_token=other_token)
    assert answer.status_code == 400, route.name


@pytest.mark.parametrize("route", ROUTES, ids=[r.name for r in ROUTES])
def test_a_foreign_origin_is_refused_even_with_the_token(app, media, route, tmp_path):
    browser, token, secret = signed_in(app)
    video_id = a_video(app, media, secret, route)
    stored = stored_videos(tmp_path)
    answer = send(browser, route, media, video_id, {"X-CSRFToken": token, "Origin": FOREIGN_ORIGIN}, form_token=token)
    assert answer.status_code == 403 and answer.get_json()["error"]["code"] == "origin_not_allowed", route.name
    assert stored_videos(tmp_path) == stored
    assert browser.get(f"/api/v1/videos/{video_id}").status_code == 200


def test_a_token_in_a_multipart_field_is_not_read_from_the_streamed_body(app, media, tmp_path):
    """Uploads are read as they arrive, so the check never parses a multipart body for a token: pages send it
    in the header. The refusal says what was missing."""
    browser, token, _secret = signed_in(app)
    route = ROUTES[2]
    answer = send(browser, route, media, "", {}, form_token=token)
    assert answer.status_code == 400 and "CSRF token is missing" in answer.get_json()["error"]["message"]
    assert stored_videos(tmp_path) == 0
