"""What the pages themselves carry, on the app factory with sign-in required: an icon that loads without signing
in (a 404 for /favicon.ico was a failed request on every page), and the live page's hint before Start."""

from __future__ import annotations

import re

from tests.web.test_auth import make_app, new_key, sign_in


def test_every_page_names_an_icon_that_loads_and_favicon_ico_needs_no_sign_in(tmp_path):
    app = make_app(tmp_path, auth="required")
    anonymous = app.test_client()
    answer = anonymous.get("/favicon.ico")
    assert answer.status_code == 200 and answer.mimetype == "image/svg+xml" and b"<svg" in answer.data
    page = anonymous.get("/signin").get_data(as_text=True)
    icon = re.search(r'<link rel="icon" href="([^"]+)" type="image/svg\+xml">', page)
    assert icon, page[:600]
    assert anonymous.get(icon.group(1)).status_code == 200


def test_the_live_page_says_what_start_does_before_the_camera_starts(tmp_path):
    app = make_app(tmp_path, auth="required")
    browser = app.test_client()
    sign_in(browser, new_key(app, "alice"))
    page = browser.get("/").get_data(as_text=True)
    hint = re.search(r'<p id="hint"[^>]*>(.*?)</p>', page, re.DOTALL)
    assert hint, page
    text = " ".join(re.sub(r"<[^>]+>", "", hint.group(1)).split())
    assert text.startswith("Press Start to use your camera") and "never stored" in text, text
