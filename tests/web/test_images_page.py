"""The image page and the live page's recording controls, rendered by the app factory (fast: no browser, no
process). What they do in a real browser is in test_images_browser.py and test_live_export_browser.py."""

from __future__ import annotations

import io
import re

import pytest

from app import create_app
from emotion_detector.web import services
from tests.web.test_auth import sign_in


def make_app(tmp_path, **config):
    database = f"sqlite:///{tmp_path / 'emotion-detector.db'}"
    settings = {"model_server": "inprocess", "environment": "test", "database_url": database, "storage_dir": tmp_path / "videos"}
    return create_app({**settings, **config})


@pytest.fixture
def client(tmp_path):
    return make_app(tmp_path).test_client()


def test_images_page_renders_its_drop_area_downloads_and_the_expressions_notice(client):
    answer = client.get("/images")
    assert answer.status_code == 200
    html = answer.get_data(as_text=True)
    for needle in ('id="drop"', 'id="files"', "multiple", 'id="download-json"', 'id="images"', "/static/images.js", 'name="csrf-token"'):
        assert needle in html, needle
    assert "20 MB" in html  # the API's own limit, from the settings
    assert "<em>expressions</em>" in html and "not what anyone feels" in html


def test_every_page_links_to_the_image_page(client):
    for path in ("/", "/images", "/videos", "/dashboard"):
        assert 'href="/images"' in client.get(path).get_data(as_text=True), path


def test_live_page_offers_recording_and_downloads(client):
    html = client.get("/").get_data(as_text=True)
    for needle in ('id="record"', "Record results", 'id="download-csv"', 'id="download-json"', 'id="summary"', "never the camera"):
        assert needle in html, needle


@pytest.mark.parametrize("path", ["/", "/images"])
def test_pages_keep_to_the_content_security_policy(client, path):
    """No inline scripts or styles: the CSP would block them."""
    html = client.get(path).get_data(as_text=True)
    assert not re.search(r"\sstyle=", html)
    assert not re.search(r"<style", html)
    assert all("src=" in tag for tag in re.findall(r"<script[^>]*>", html))


def test_images_page_needs_a_sign_in_when_auth_is_required(tmp_path):
    app = make_app(tmp_path, auth="required")
    browser = app.test_client()
    answer = browser.get("/images")
    assert answer.status_code == 302 and answer.headers["Location"] == "/signin?next=/images"
    with app.app_context():
        secret = services().keys.create("alice").secret
    sign_in(browser, secret)
    assert browser.get("/images").status_code == 200


def test_a_signed_in_page_posts_images_with_its_csrf_token(tmp_path, shared_dir):
    """What images.js does: the session cookie authenticates, the page's token goes in X-CSRFToken."""
    app = make_app(tmp_path, auth="required")
    browser = app.test_client()
    with app.app_context():
        secret = services().keys.create("alice").secret
    sign_in(browser, secret)
    token = re.search(r'name="csrf-token" content="([^"]+)"', browser.get("/images").get_data(as_text=True)).group(1)
    image = (shared_dir / "media" / "images" / "obama.jpg").read_bytes()

    refused = browser.post("/api/v1/analyze", data={"image": (io.BytesIO(image), "obama.jpg")})
    assert refused.status_code == 400 and refused.get_json()["error"]["message"]
    answer = browser.post("/api/v1/analyze", data={"image": (io.BytesIO(image), "obama.jpg")}, headers={"X-CSRFToken": token})
    assert answer.status_code == 200 and len(answer.get_json()["faces"]) == 1
