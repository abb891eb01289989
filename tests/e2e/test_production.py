"""The product end to end in production mode, as a person uses it in Chromium (issue 27).

Everything real and each in its own process: EMOTION_ENVIRONMENT=production (sign-in required), PostgreSQL,
Redis with a Celery worker, the model server, Mosquitto (127.0.0.1:1883) with the forwarder, gunicorn. A key
made with `emotion-detector keys create` → sign in → live with a fake webcam (a real video) → a group photo on
/images → a video uploaded from the page, its progress, results, charts and a seek → its HTML and PDF reports
→ a real `emotion-detector edge` run appearing on the dashboard → the key revoked (the session ends) → sign
out with another key.

Every page is looked at 1280×800 and 390×844: a screenshot of each in ARTIFACTS/e2e-production for a person
to look at, no sideways scrolling on the phone, each overlay canvas within 2 px of the picture it covers with
the boxes drawn on the faces, and after every step no console error or warning and no failed request.
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pypdfium2
import pytest
import redis
import requests
from paho.mqtt.enums import CallbackAPIVersion
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from emotion_detector.edge.messages import status_topic
from emotion_detector.labels import EMOTIONS
from tests.browser import ARTIFACTS, chromium, console_problems, failed_requests, set_viewport
from tests.conftest import ROOT, free_port, start_model_server, start_python, stop, wait_until
from tests.videos.conftest import REDIS_URL, new_postgres_database

pytestmark = pytest.mark.slow  # every server as a process, and a browser

DESKTOP, PHONE = (1280, 800), (390, 844)
SHOTS = ARTIFACTS / "e2e-production"
REDIS_E2E_DB = 14  # queue and rate-limit counters, emptied before and after (11: video tests, 12: bench.video, 13: test_auth_processes)
OVERLAY_TOLERANCE_PX = 2
WORKER = ["-m", "celery", "-A", "emotion_detector.videos.jobs", "worker", "--concurrency", "1", "--loglevel", "INFO"]
WORKER += ["--without-gossip", "--without-mingle", "--without-heartbeat"]
FORWARDER = ["-m", "emotion_detector", "forward", "--group"]


@dataclass
class Stack:
    url: str  # as the person types it: localhost, a secure context for the camera and the session cookie
    env: dict[str, str]  # what every process of this deployment reads (the CLI's too)
    log_dir: Path
    processes: dict[str, subprocess.Popen]

    def command(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """The real `emotion-detector` command line, in this deployment's environment."""
        return subprocess.run(
            [sys.executable, "-m", "emotion_detector", *args],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n{path.read_text()[-3000:]}" for path in sorted(self.log_dir.glob("*.log")))


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[Stack]:
    log_dir = tmp_path_factory.mktemp("e2e-logs")
    broker = f"{REDIS_URL}/{REDIS_E2E_DB}"
    redis.Redis.from_url(broker).flushdb()
    with new_postgres_database() as database_url:
        model_server = start_model_server(log_dir)
        port = free_port()
        env = {
            "EMOTION_ENVIRONMENT": "production",  # sign-in required, secure cookies, no insecure defaults
            "EMOTION_SECRET_KEY": secrets.token_urlsafe(48),
            "EMOTION_DATABASE_URL": database_url,
            "EMOTION_BROKER_URL": broker,
            "EMOTION_STORAGE_DIR": str(log_dir / "storage"),
            "EMOTION_MODEL_SERVER": model_server.grpc_target,
            "EMOTION_MQTT_URL": "mqtt://127.0.0.1:1883",
        }
        web_env = {"PORT": str(port), "HOST": "127.0.0.1", "WEB_CONCURRENCY": "1", **env}
        processes = {
            "model": model_server.process,
            "web": start_python(["-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"], log_dir / "web.log", web_env),
            "worker": start_python([*WORKER, "--hostname", f"e2e-{uuid.uuid4().hex[:6]}@%h"], log_dir / "worker.log", env),
            # A group of its own: the shared broker's other forwarders do not take this deployment's events.
            "forwarder": start_python([*FORWARDER, f"e2e-{uuid.uuid4().hex[:8]}"], log_dir / "forwarder.log", env),
        }
        running = Stack(f"http://localhost:{port}", env, log_dir, processes)
        try:
            wait_until(lambda: requests.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=2).ok, 90, "web app", processes["web"])
            wait_until(lambda: " ready." in (log_dir / "worker.log").read_text(), 90, "celery worker", processes["worker"])
            wait_until(lambda: "subscribed to" in (log_dir / "forwarder.log").read_text(), 60, "forwarder", processes["forwarder"])
            yield running
        finally:
            for process in processes.values():
                stop(process)
            redis.Redis.from_url(broker).flushdb()


@pytest.fixture
def device_id() -> Iterator[str]:
    """An edge device of this test's own; its retained status is cleared afterwards (the broker is shared)."""
    name = f"e2e-{uuid.uuid4().hex[:10]}"
    yield name
    cleaner = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    cleaner.connect("127.0.0.1", 1883)
    cleaner.loop_start()
    cleaner.publish(status_topic(name), b"", qos=1, retain=True).wait_for_publish(timeout=5)
    cleaner.disconnect()
    cleaner.loop_stop()


class Person:
    """The browser, and what is checked on every page it shows."""

    def __init__(self, browser: WebDriver, stack: Stack):
        self.browser, self.stack = browser, stack
        self.pages_seen: list[str] = []

    def go(self, path: str) -> None:
        self.browser.get(f"{self.stack.url}{path}")

    def text(self, selector: str) -> str:
        return self.browser.find_element(By.CSS_SELECTOR, selector).text

    def wait(self, timeout_s: float = 20) -> WebDriverWait:
        return WebDriverWait(self.browser, timeout_s)

    def js(self, script: str, *args):
        return self.browser.execute_script(script, *args)

    def nothing_went_wrong(self, step: str, expected: str | None = None) -> None:
        """No console error or warning and no failed request since the last check; ``expected``: the one
        failure this step causes on purpose (it must have happened: in the network log and in the console)."""
        problems, failures = console_problems(self.browser), failed_requests(self.browser)
        if expected is not None:
            assert any(expected in f for f in failures) and any(expected in p for p in problems), (step, problems, failures)
            problems, failures = [p for p in problems if expected not in p], [f for f in failures if expected not in f]
        assert (problems, failures) == ([], []), f"{step}: console {problems}, failed requests {failures}"

    def look(self, name: str, overlays: bool = False, scroll_to: str | None = None) -> None:
        """The page at both sizes: a screenshot of each, nothing wider than the phone's screen, and (overlays)
        every overlay canvas on the picture it covers with the boxes on the faces. Back at the desktop size."""
        for width, height in (DESKTOP, PHONE):
            set_viewport(self.browser, width, height)
            if scroll_to:
                self.js("document.querySelector(arguments[0]).scrollIntoView({block: 'start'});", scroll_to)
            time.sleep(0.4)  # layout, ResizeObservers and canvases settle after the resize
            if width == PHONE[0]:
                wide = self.js("return document.documentElement.scrollWidth")
                assert wide <= PHONE[0], f"{name}: the page is {wide} px wide on a {PHONE[0]} px phone: it scrolls sideways"
            if overlays:
                check_overlays(self, name, (width, height))
            SHOTS.mkdir(parents=True, exist_ok=True)
            self.browser.save_screenshot(str(SHOTS / f"{name}-{width}x{height}.png"))
        set_viewport(self.browser, *DESKTOP)
        self.pages_seen.append(name)


# Each overlay canvas, the element it covers, its face boxes (CSS px from its corner) and, read in the same
# frame, the share of points along each box's outline where the canvas is painted (within 2 px: the stroke).
OVERLAYS = """
const rect = (e) => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.width, r.height]; };
function pixels(canvas) {  // read from a copy made for reading: reading the page's own canvas would slow it down
  const copy = document.createElement('canvas');
  copy.width = canvas.width; copy.height = canvas.height;
  const context = copy.getContext('2d', {willReadFrequently: true});
  context.drawImage(canvas, 0, 0);
  return context.getImageData(0, 0, copy.width, copy.height).data;
}
function painted(canvas, data, [x1, y1, x2, y2]) {
  const ratio = canvas.width / canvas.getBoundingClientRect().width;
  const alpha = (x, y) => data[4 * (Math.round(y * ratio) * canvas.width + Math.round(x * ratio)) + 3] || 0;
  const near = (x, y) => [-2, 0, 2].some((dx) => [-2, 0, 2].some((dy) => alpha(x + dx, y + dy) > 0));
  let hits = 0, points = 0;
  for (let t = 0.2; t <= 0.81; t += 0.1) {
    const across = x1 + t * (x2 - x1), down = y1 + t * (y2 - y1);
    for (const [x, y] of [[x1, down], [x2, down], [across, y1], [across, y2]]) { points++; if (near(x, y)) hits++; }
  }
  return hits / points;
}
const overlay = (canvas, covered, boxes) => {
  const data = pixels(canvas);
  return {canvas: rect(canvas), covered: rect(covered), boxes, painted: boxes.map((box) => painted(canvas, data, box))};
};
const live = document.getElementById('overlay');
if (live) {
  const video = document.getElementById('video');
  if (!video.videoWidth) return [];
  const scale = Math.min(live.width / video.videoWidth, live.height / video.videoHeight);
  const offsetX = (live.width - video.videoWidth * scale) / 2, offsetY = (live.height - video.videoHeight * scale) / 2;
  const boxes = [...state.drawn.values()].map((b) => [b[0] + offsetX, b[1] + offsetY, b[2] + offsetX, b[3] + offsetY]);
  return [overlay(live, video, boxes)];
}
return [...document.querySelectorAll('article.image-result')].filter((a) => a.dataset.status === 'done').map((a, i) => {
  const img = a.querySelector('img'), answer = results[i].answer, shown = img.getBoundingClientRect();
  const scaleX = shown.width / answer.width, scaleY = shown.height / answer.height;
  const boxes = answer.faces.map((f) => [f.box[0] * scaleX, f.box[1] * scaleY, f.box[2] * scaleX, f.box[3] * scaleY]);
  return overlay(a.querySelector('canvas'), img, boxes);
});
"""


def check_overlays(person: Person, name: str, viewport: tuple[int, int]) -> None:
    overlays = person.js(OVERLAYS)
    assert overlays, f"{name} at {viewport}: no overlay drawn"
    for overlay in overlays:
        offsets = [abs(a - b) for a, b in zip(overlay["canvas"], overlay["covered"], strict=True)]
        assert max(offsets) <= OVERLAY_TOLERANCE_PX, f"{name} at {viewport}: canvas {overlay['canvas']} over picture {overlay['covered']}"
        assert overlay["boxes"], f"{name} at {viewport}: no face boxed"
        for box, painted in zip(overlay["boxes"], overlay["painted"], strict=True):
            assert painted >= 0.8, f"{name} at {viewport}: the box {box} is not drawn where the face is ({painted:.0%} of its outline)"


def sign_in(person: Person, key: str, then: str) -> None:
    person.wait().until(lambda b: "/signin" in b.current_url)
    assert person.text("h1") == "Sign in" and "needs an API key" in person.text(".signin")
    person.browser.find_element(By.ID, "key").send_keys(key)
    person.browser.find_element(By.CSS_SELECTOR, ".signin button[type=submit]").click()
    person.wait().until(lambda b: b.current_url == f"{person.stack.url}{then}")


def listed_faces(person: Person) -> list[str]:
    return person.js("return [...document.querySelectorAll('#faces li.face')].map((li) => li.textContent);")


def test_the_product_in_production_from_a_new_key_to_signing_out(stack, fake_camera, shared_dir, device_id, tmp_path):
    started = time.monotonic()
    made = stack.command("keys", "create", "e2e person")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    browser = chromium(tmp_path, fake_camera, allow_camera=True, network_log=True)
    person = Person(browser, stack)
    try:
        set_viewport(browser, *DESKTOP)
        sign_in_first(person, key)
        live(person)
        images(person, shared_dir)
        video_id = video(person, shared_dir)
        reports(person, video_id)
        dashboard(person, device_id, shared_dir)
        api_docs(person)
        revoke_then_sign_out(person, key)
    except BaseException:
        with contextlib.suppress(Exception):
            browser.save_screenshot(str(SHOTS / "failed.png"))
        print(stack.logs())
        raise
    finally:
        browser.quit()
    elapsed_s = time.monotonic() - started
    print(f"e2e: {len(person.pages_seen)} pages at 2 sizes in {elapsed_s:.0f} s: {person.pages_seen}")


def sign_in_first(person: Person, key: str) -> None:
    """Without a session every page leads to the sign-in page; the key signs in and the live page opens."""
    person.go("/")
    person.wait().until(lambda b: b.current_url == f"{person.stack.url}/signin?next=/")
    person.look("signin")
    person.nothing_went_wrong("the sign-in page")
    sign_in(person, key, "/")
    assert person.text(".signout span") == "e2e person"  # who is signed in, in the top bar


def live(person: Person) -> None:
    """Before Start a hint; after it, the webcam's face boxed, labelled and listed; after Stop the hint again."""
    hint = person.browser.find_element(By.ID, "hint")
    assert hint.is_displayed() and hint.text.startswith("Press Start to use your camera")
    person.look("live-before-start")
    person.browser.find_element(By.ID, "start").click()
    person.wait().until(lambda b: len(listed_faces(person)) == 1 and listed_faces(person)[0].startswith("#"))
    face = listed_faces(person)[0]  # "#1: neutral 65%, age ~33, male"
    assert any(emotion in face for emotion in EMOTIONS) and "age ~" in face, face
    assert person.text("#connection") == "connected" and not hint.is_displayed()
    assert person.text("#detector") == "centerface"
    person.look("live", overlays=True)
    person.browser.find_element(By.ID, "stop").click()
    assert person.text("#connection") == "not connected" and hint.is_displayed() and listed_faces(person) == []
    time.sleep(0.5)  # the socket's closing handshake
    person.nothing_went_wrong("live")


def images(person: Person, shared_dir: Path) -> None:
    """A group photo: five faces boxed on the picture, at both sizes, and listed under it."""
    person.browser.find_element(By.LINK_TEXT, "Images").click()
    person.wait().until(lambda b: b.current_url.endswith("/images"))
    person.browser.find_element(By.ID, "files").send_keys(str(shared_dir / "media" / "images" / "multi_face.jpg"))
    person.wait(60).until(lambda b: b.find_element(By.CSS_SELECTOR, "article.image-result").get_attribute("data-status") == "done")
    assert person.text("article.image-result .pill") == "5 faces"
    assert len(person.browser.find_elements(By.CSS_SELECTOR, "article.image-result li.face")) == 5
    assert person.text("#image-status") == "1 image · 5 faces"
    person.look("images", overlays=True)
    person.look("images-group", overlays=True, scroll_to="article.image-result")
    person.nothing_went_wrong("images")


def video(person: Person, shared_dir: Path) -> str:
    """A video uploaded from the page (multipart, with the session's CSRF token): progress while it is
    analysed, then the results: the person counted, their charts, the annotated video, and a click on the
    chart seeks it."""
    person.browser.find_element(By.LINK_TEXT, "Videos").click()
    person.wait().until(lambda b: b.current_url.endswith("/videos"))
    assert "visible only with the key you signed in with" in person.text("#storage-notice")
    person.wait().until(lambda b: b.find_element(By.ID, "no-videos").is_displayed())
    person.look("videos")
    person.browser.find_element(By.ID, "file").send_keys(str(shared_dir / "media" / "videos" / "single_face.mp4"))
    person.wait(30).until(lambda b: "/videos/" in b.current_url)
    video_id = person.browser.current_url.rsplit("/", 1)[1]
    assert person.text("h1") == "single_face.mp4"
    seen = set()
    with contextlib.suppress(Exception):  # the statuses it passes through, while it runs
        person.wait(240).until(lambda b: seen.add(person.text("#status")) or person.browser.find_element(By.ID, "results").is_displayed())
    assert person.text("#status") == "done", f"the job ended {person.text('#status')}: {person.text('#error')}"
    assert seen & {"queued", "running"}, seen  # progress was shown before the results
    assert person.browser.find_element(By.ID, "progress").get_attribute("value") == "1" and person.text("#percent") == "100%"
    assert person.text("#people-count").startswith("1 person")
    charts = person.browser.find_elements(By.CSS_SELECTOR, "#charts svg.chart.expressions")
    assert len(charts) == 1 and len(charts[0].find_elements(By.CSS_SELECTOR, "path[data-emotion]")) == len(EMOTIONS)
    state = (
        "const v = document.getElementById('annotated');"
        "return {ready: v.readyState, duration: v.duration, time: v.currentTime, error: v.error && v.error.code};"
    )
    person.wait().until(lambda b: person.js(state)["ready"] >= 2)
    assert person.js(state)["duration"] > 2 and person.js(state)["error"] is None
    person.js(
        "const c = arguments[0], r = c.getBoundingClientRect();"
        "c.dispatchEvent(new MouseEvent('click', {clientX: r.left + r.width * 0.75, clientY: r.top + 20, bubbles: true}));",
        charts[0],
    )
    person.wait(10).until(lambda b: person.js(state)["time"] > 0.5 * person.js(state)["duration"])
    person.look("video-results")
    person.look("video-charts", scroll_to="#charts")
    person.nothing_went_wrong("the video's results")
    return video_id


def reports(person: Person, video_id: str) -> None:
    """The page's report links: the HTML report opens, self-contained; the PDF is a real PDF of the same video."""
    html_link = person.browser.find_element(By.ID, "report-html").get_attribute("href")
    pdf_link = person.browser.find_element(By.ID, "report-pdf").get_attribute("href")
    assert html_link.endswith(f"/api/v1/videos/{video_id}/report.html") and pdf_link.endswith(f"/api/v1/videos/{video_id}/report.pdf")
    person.browser.get(html_link)
    assert "single_face.mp4" in person.browser.find_element(By.TAG_NAME, "body").text
    assert person.js("return document.querySelectorAll('svg').length") >= 1
    outside = person.js(
        "return [...document.querySelectorAll('[src], link[href]')].map((e) => e.getAttribute('src') || e.getAttribute('href'))"
        ".filter((u) => !u.startsWith('data:'));"
    )
    assert outside == []  # charts and styles inline
    person.look("report")
    person.nothing_went_wrong("the HTML report")
    session = requests.Session()
    for cookie in person.browser.get_cookies():
        session.cookies.set(cookie["name"], cookie["value"])
    answer = session.get(pdf_link.replace("localhost", "127.0.0.1"), timeout=60)
    assert answer.status_code == 200 and answer.headers["Content-Type"] == "application/pdf"
    pdf = pypdfium2.PdfDocument(io.BytesIO(answer.content))
    assert len(pdf) >= 1 and "single_face.mp4" in pdf[0].get_textpage().get_text_range()


def dashboard(person: Person, device_id: str, shared_dir: Path) -> None:
    """The dashboard open while a real `emotion-detector edge` run publishes a clip: the device appears, its
    events reach the live feed, and it goes offline when the run ends."""
    person.go("/dashboard")
    person.wait().until(lambda b: person.text("#connection") == "live")
    card = f"article.device[data-device-id='{device_id}']"
    clip, queue = shared_dir / "media" / "videos" / "single_face.mp4", person.stack.log_dir / "edge.sqlite3"
    command = [sys.executable, "-m", "emotion_detector", "edge", "--source", str(clip), "--mqtt", "mqtt://127.0.0.1:1883"]
    edge = subprocess.Popen(
        [*command, "--device-id", device_id, "--interval-s", "0.5", "--queue-path", str(queue)],
        cwd=ROOT,
        env={**os.environ, **person.stack.env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _out, err = edge.communicate(timeout=120)
    assert edge.returncode == 0, err
    person.wait(30).until(lambda b: b.find_elements(By.CSS_SELECTOR, card) and person.text(f"{card} .badge") == "offline")
    rows = person.wait(30).until(lambda b: [r.text for r in b.find_elements(By.CSS_SELECTOR, "#feed li") if device_id in r.text] or None)
    assert any(emotion in row for row in rows for emotion in EMOTIONS), rows
    assert "ago" in person.text(f"{card} .last-seen")
    person.look("dashboard")
    person.nothing_went_wrong("the dashboard")


def api_docs(person: Person) -> None:
    person.go("/api/docs")
    person.wait().until(lambda b: b.find_elements(By.CSS_SELECTOR, "#swagger-ui .opblock"))
    assert "POST" in person.text("#swagger-ui") and "/api/v1/videos" in person.text("#swagger-ui")
    person.look("api-docs")
    person.nothing_went_wrong("the API docs")


def revoke_then_sign_out(person: Person, key: str) -> None:
    """Revoking the key (with the keys command, another process) ends its session within auth_cache_s (10 s by
    default: the web process trusts what the database confirmed that long); signing in with it is refused.
    Another key signs in, and Sign out ends that session."""
    person.go("/videos")
    assert person.browser.current_url.endswith("/videos")
    revoked = person.stack.command("keys", "revoke", key[:10])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout, revoked.stderr

    def signed_out(browser: WebDriver) -> bool:
        person.go("/videos")
        return "/signin" in browser.current_url

    WebDriverWait(person.browser, 10 + 5, poll_frequency=1).until(signed_out)
    # While the revocation reaches the web process, a page may still render and its list then be refused (401),
    # and that page sends the person to sign in; nothing else may go wrong meanwhile.
    problems, failures = console_problems(person.browser), failed_requests(person.browser)
    assert all(f.startswith("401 ") and f.endswith("/api/v1/videos") for f in failures), failures
    assert all("/api/v1/videos" in p and "401" in p for p in problems), problems
    person.browser.find_element(By.ID, "key").send_keys(key)
    person.browser.find_element(By.CSS_SELECTOR, ".signin button[type=submit]").click()
    person.wait().until(lambda b: b.find_elements(By.CSS_SELECTOR, ".signin .problem"))
    assert person.text(".signin .problem") == "That key is unknown or revoked."
    person.nothing_went_wrong("a revoked key", expected=f"{person.stack.url}/signin")  # the refused sign-in answers 403
    other = person.stack.command("keys", "create", "e2e colleague")
    assert other.returncode == 0, other.stderr
    person.browser.find_element(By.ID, "key").clear()
    sign_in(person, other.stdout.strip(), "/videos")
    assert person.text(".signout span") == "e2e colleague"
    # The first key's video is not theirs.
    person.wait().until(lambda b: b.find_element(By.ID, "no-videos").is_displayed())
    assert person.text("#no-videos") == "No videos here yet for the key you signed in with."
    assert person.browser.find_elements(By.CSS_SELECTOR, "#videos tr") == []
    person.browser.find_element(By.CSS_SELECTOR, ".signout button").click()
    person.wait().until(lambda b: b.current_url.endswith("/signin"))
    person.go("/videos")
    person.wait().until(lambda b: "/signin" in b.current_url)
    person.nothing_went_wrong("signing out")
