"""The image page in headless Chromium against gunicorn, with real photographs: several images at once, each
with its faces boxed, labelled and listed, a file that is no image and one over the size limit answered with
the API's own message, and the JSON download read back from disk. Screenshots at 1280×800 and on a 390 px
phone screen go to ARTIFACTS for a person to look at."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import cv2
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from emotion_detector.labels import EMOTIONS
from tests.browser import ARTIFACTS, chromium
from tests.conftest import stop
from tests.web.conftest import RunningWeb, create_key, start_web

pytestmark = pytest.mark.slow  # headless Chromium against gunicorn

MAX_IMAGE_BYTES = 1_000_000  # the web process's limit here, so that a real photograph can be too large
DESKTOP, PHONE = (1280, 800), (390, 844)


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[RunningWeb]:
    running = start_web(tmp_path_factory.mktemp("web"), "inprocess", WEB_CONCURRENCY="1", EMOTION_MAX_IMAGE_BYTES=str(MAX_IMAGE_BYTES))
    yield running
    stop(running.process)


def open_page(tmp_path: Path, url: str, viewport: tuple[int, int], scale: float = 1) -> WebDriver:
    browser = chromium(tmp_path, camera=None, allow_camera=False)
    width, height = viewport
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": width < 600}
    )
    downloads = tmp_path / "downloads"
    downloads.mkdir(exist_ok=True)
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    browser.get(url)
    return browser


def downloaded(folder: Path, suffix: str, timeout_s: float = 10) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = [p for p in folder.glob(f"*{suffix}") if p.stat().st_size]
        if found:
            return found[0]
        time.sleep(0.1)
    raise AssertionError(f"no *{suffix} file was downloaded into {folder}: {list(folder.iterdir())}")


def articles(browser: WebDriver) -> list[dict]:
    return browser.execute_script(
        "return [...document.querySelectorAll('article.image-result')].map(a => ({"
        " name: a.querySelector('.image-name').textContent, status: a.dataset.status,"
        " problem: a.querySelector('.problem').hidden ? null : a.querySelector('.problem').textContent,"
        " faces: [...a.querySelectorAll('li.face')].map(li => ({emotion: li.dataset.emotion, text: li.textContent})),"
        " painted: (() => { const c = a.querySelector('canvas'); if (!c.width || !c.height) return 0;"
        "   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
        "   let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; })() }));"
    )


DROP = """
const [input, callback] = arguments;
const transfer = new DataTransfer();
for (const file of input.files) transfer.items.add(file);
const zone = document.getElementById('drop');
zone.dispatchEvent(new DragEvent('dragover', {dataTransfer: transfer, bubbles: true, cancelable: true}));
zone.dispatchEvent(new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));
input.remove();
callback();
"""


def add_images(browser: WebDriver, paths: list[Path], drop: bool = False) -> list[dict]:
    """Through the page's "choose files" input, or dropped onto the drop zone (files from a stray input of
    the test's own, as a drag from the desktop would bring them)."""
    names = "\n".join(str(p) for p in paths)
    if drop:
        stray = browser.execute_script(
            "const i = document.createElement('input'); i.type = 'file'; i.multiple = true; document.body.append(i); return i;"
        )
        stray.send_keys(names)
        browser.execute_async_script(DROP, stray)
    else:
        browser.find_element(By.ID, "files").send_keys(names)
    return WebDriverWait(browser, 60).until(
        lambda b: (found := articles(b)) and len(found) == len(paths) and all(a["status"] in ("done", "failed") for a in found) and found
    )


def screenshot(browser: WebDriver, name: str, tmp_path: Path, scroll_to: str | None = None) -> None:
    if scroll_to:
        browser.execute_script("document.querySelector(arguments[0]).scrollIntoView({block: 'start'});", scroll_to)
    else:
        browser.execute_script("window.scrollTo(0, 0);")
    time.sleep(0.3)  # the canvases redraw after a resize or scroll settles
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / name))


@pytest.fixture
def no_face(shared_dir, tmp_path) -> Path:
    """The first frame of a real video with no one in it (sky and clouds)."""
    ok, frame = cv2.VideoCapture(str(shared_dir / "media" / "videos" / "no_face.mp4")).read()
    assert ok
    path = tmp_path / "no_one.jpg"
    cv2.imwrite(str(path), frame)
    return path


@pytest.fixture
def not_an_image(tmp_path) -> Path:
    path = tmp_path / "notes.jpg"  # named like an image; the server looks at the bytes
    path.write_text("shopping list: eggs, milk\n")
    return path


def test_image_page_boxes_labels_and_lists_every_face_and_downloads_them_as_json(web, shared_dir, no_face, not_an_image, tmp_path):
    images = shared_dir / "media" / "images"
    too_large = images / "BWPictureHuman.jpg"
    assert too_large.stat().st_size > MAX_IMAGE_BYTES
    browser = open_page(tmp_path, f"{web.url}/images", DESKTOP)
    try:
        assert "expressions" in browser.find_element(By.TAG_NAME, "footer").text  # not inner feelings
        assert "1 MB" in browser.find_element(By.ID, "drop").text
        photos = [images / "obama.jpg", images / "two_people.jpg", images / "astronaut.png", images / "multi_face.jpg"]
        shown = add_images(browser, [*photos, no_face, not_an_image, too_large])
        by_name = {a["name"]: a for a in shown}

        found = {name: len(by_name[name]["faces"]) for name in ("obama.jpg", "two_people.jpg", "astronaut.png", "multi_face.jpg")}
        assert found == {"obama.jpg": 1, "two_people.jpg": 2, "astronaut.png": 1, "multi_face.jpg": 5}  # the group too
        for name in found:
            assert by_name[name]["status"] == "done"
            assert by_name[name]["painted"] > 2000  # boxes and labels really are on the canvas over the picture
            for face in by_name[name]["faces"]:
                assert face["emotion"] in EMOTIONS and "age ~" in face["text"]

        empty = by_name["no_one.jpg"]
        assert empty["status"] == "done" and empty["faces"] == [] and empty["painted"] == 0
        # An empty answer says why: the smallest face looked for in it, and what to try; every answer says who looked.
        assert browser.find_element(By.CSS_SELECTOR, "article.image-result:nth-of-type(5) .no-face").text == (
            "No faces found. Faces smaller than 20 px high are not looked for: try a larger picture, or a closer view of the faces."
        )
        detection = browser.find_elements(By.CSS_SELECTOR, "article.image-result .detection")
        assert [d.text for d in detection[:2]] == ["Detector: centerface, faces from 20 px high."] * 2
        bad = by_name["notes.jpg"]
        assert bad["status"] == "failed" and "JPEG or PNG" in bad["problem"]  # the API's own message
        big = by_name["BWPictureHuman.jpg"]
        assert big["status"] == "failed" and big["problem"].startswith("The data value transmitted exceeds the capacity limit.")
        assert "(1.3 MB; the limit is 1.0 MB)" in big["problem"]  # the page adds by how much
        status = browser.find_element(By.ID, "image-status").text
        assert status == "7 images · 9 faces · 2 failed", status

        screenshot(browser, "images-1280x800.png", tmp_path)
        screenshot(browser, "images-1280x800-group.png", tmp_path, "article.image-result:nth-of-type(2)")
        screenshot(browser, "images-1280x800-errors.png", tmp_path, "article.image-result:nth-of-type(5)")  # no face, then errors

        browser.find_element(By.ID, "download-json").click()
        saved = json.loads(downloaded(tmp_path / "downloads", ".json").read_text())
        names = ["obama.jpg", "two_people.jpg", "astronaut.png", "multi_face.jpg", "no_one.jpg", "notes.jpg", "BWPictureHuman.jpg"]
        assert [image["file"] for image in saved["images"]] == names
        obama, pair, astronaut, group, no_one, third, fourth = saved["images"]
        assert no_one["faces"] == [] and no_one["width"] > 0 and "smaller than 20 px" in no_one["message"]
        assert len(group["faces"]) == 5 and group["detection"] == {"detector": "centerface", "min_face_px": 20.0}
        assert (obama["width"], obama["height"], len(obama["faces"])) == (910, 1137, 1)
        assert len(pair["faces"]) == 2 and len(astronaut["faces"]) == 1
        for image in (obama, pair, astronaut):
            for face in image["faces"]:
                x1, y1, x2, y2 = face["box"]  # pixels of the submitted image
                assert 0 <= x1 < x2 <= image["width"] and 0 <= y1 < y2 <= image["height"]
                assert face["emotion"]["label"] in EMOTIONS and "id" not in face  # no track ids for single images
                assert sum(face["emotion"]["probabilities"].values()) == pytest.approx(1, abs=1e-3)
                assert face["gender"]["label"] in ("female", "male") and face["age"]["years"] > 0
        assert third["error"]["code"] == "unsupported_format" and "faces" not in third
        assert fourth["error"]["code"] == "payload_too_large" and fourth["bytes"] == too_large.stat().st_size
        assert "not what anyone feels" in saved["note"]
    finally:
        browser.quit()


def test_images_dropped_on_a_phone_are_legible(web, shared_dir, not_an_image, tmp_path):
    images = shared_dir / "media" / "images"
    browser = open_page(tmp_path, f"{web.url}/images", PHONE, scale=2)
    try:
        shown = add_images(browser, [images / "two_people.jpg", images / "biden.jpg", not_an_image], drop=True)
        assert [a["status"] for a in shown] == ["done", "done", "failed"]
        assert all(a["painted"] > 1000 for a in shown[:2])
        # Nothing is wider than the screen: no sideways scrolling on a phone.
        assert browser.execute_script("return document.documentElement.scrollWidth") <= PHONE[0]
        screenshot(browser, "images-390x844.png", tmp_path)
        screenshot(browser, "images-390x844-group.png", tmp_path, "article.image-result:nth-of-type(2)")
        screenshot(browser, "images-390x844-error.png", tmp_path, "article.image-result:nth-of-type(3)")
    finally:
        browser.quit()


@pytest.fixture(scope="module")
def secured_web(tmp_path_factory) -> Iterator[tuple[RunningWeb, str]]:
    """The web app with EMOTION_AUTH=required and a key made by the real `keys create` command."""
    folder = tmp_path_factory.mktemp("auth")
    env = {"EMOTION_DATABASE_URL": f"sqlite:///{folder / 'emotion-detector.db'}", "EMOTION_AUTH": "required"}
    key = create_key("image page", env)
    running = start_web(folder, "inprocess", WEB_CONCURRENCY="1", **env)
    yield running, key
    stop(running.process)


def test_image_page_signs_in_and_posts_with_the_session_and_its_csrf_token(secured_web, shared_dir, tmp_path):
    web, key = secured_web
    browser = open_page(tmp_path, f"{web.url}/images", DESKTOP)
    try:
        assert browser.current_url == f"{web.url}/signin?next=/images"
        browser.find_element(By.ID, "key").send_keys(key)
        browser.find_element(By.CSS_SELECTOR, ".signin button[type=submit]").click()
        WebDriverWait(browser, 10).until(lambda b: b.current_url == f"{web.url}/images")
        [shown] = add_images(browser, [shared_dir / "media" / "images" / "obama.jpg"])
        assert shown["status"] == "done" and len(shown["faces"]) == 1, shown
    finally:
        browser.quit()
