"""The live page's recording in headless Chromium, with a real video of two people as its webcam: the results
it receives are kept in the page (never frames), summed up per track id while it runs, and downloaded as CSV
and JSON files that are read back from disk. Screenshots at 1280×800 and 390×844 go to ARTIFACTS."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from emotion_detector.labels import EMOTIONS
from tests.browser import ARTIFACTS, chromium
from tests.conftest import stop, video_as_mjpeg
from tests.web.conftest import RunningWeb, start_web
from tests.web.test_images_browser import downloaded

pytestmark = pytest.mark.slow  # headless Chromium against gunicorn

CSV_COLUMNS = ["time_ms", "frame", "id", "x1", "y1", "x2", "y2", "score", "emotion", "emotion_confidence",
               *[f"p_{e}" for e in EMOTIONS], "age_years", "gender", "gender_confidence"]  # fmt: skip


@pytest.fixture(scope="module")
def web(tmp_path_factory) -> Iterator[RunningWeb]:
    running = start_web(tmp_path_factory.mktemp("web"), "inprocess", WEB_CONCURRENCY="1")
    yield running
    stop(running.process)


@pytest.fixture(scope="module")
def two_people_camera(shared_dir, tmp_path_factory) -> Path:
    video = shared_dir / "media" / "videos" / "head-pose-face-detection-female-and-male.mp4"
    return video_as_mjpeg(video, tmp_path_factory.mktemp("camera"))


def live_page(tmp_path: Path, url: str, camera: Path, viewport: tuple[int, int], scale: float = 1) -> WebDriver:
    browser = chromium(tmp_path, camera, allow_camera=True)
    width, height = viewport
    browser.execute_cdp_cmd(
        "Emulation.setDeviceMetricsOverride", {"width": width, "height": height, "deviceScaleFactor": scale, "mobile": width < 600}
    )
    (tmp_path / "downloads").mkdir()
    browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(tmp_path / "downloads")})
    browser.get(url)
    return browser


def summary_rows(browser: WebDriver) -> list[dict]:
    return browser.execute_script(
        "return [...document.querySelectorAll('#summary-rows tr')]"
        ".map(tr => ({id: tr.dataset.id, cells: [...tr.cells].map(td => td.textContent)}));"
    )


def wider_than_screen(browser: WebDriver) -> list[str]:
    """The elements that stick out past the right edge of a 390 px screen, for the failure message."""
    return browser.execute_script(
        "return [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > 390.5)"
        ".map(e => `${e.tagName.toLowerCase()}#${e.id}.${e.className} right=${e.getBoundingClientRect().right}`);"
    )


def record_for_a_while(browser: WebDriver, seconds: float) -> None:
    browser.find_element(By.ID, "record").click()
    browser.find_element(By.ID, "start").click()
    WebDriverWait(browser, 30).until(
        lambda b: any(float(row["cells"][1].split()[0]) >= seconds for row in summary_rows(b)),
        "a face seen long enough in the summary",
    )


def test_live_page_records_results_and_downloads_them_as_csv_and_json(web, two_people_camera, tmp_path):
    browser = live_page(tmp_path, web.url, two_people_camera, (1280, 800))
    try:
        assert browser.find_element(By.ID, "download-csv").get_attribute("disabled")  # nothing recorded yet
        record_for_a_while(browser, 2.0)
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "live-record-1280x800-top.png"))
        browser.execute_script("window.scrollTo(0, document.body.scrollHeight);")
        browser.save_screenshot(str(ARTIFACTS / "live-record-1280x800.png"))
        browser.find_element(By.ID, "record").click()  # recording off: the results stay for the downloads
        browser.find_element(By.ID, "stop").click()
        status = browser.find_element(By.ID, "record-status").text
        assert status.startswith("Recorded: ") and "no frames" in status
        rows = summary_rows(browser)
        # Faces not confirmed by the tracker yet have no id: counted together in a row of their own.
        assert any(row["id"] for row in rows)
        assert all(row["cells"][0] == (f"#{row['id']}" if row["id"] else "not yet tracked") for row in rows)
        assert all("%" in row["cells"][2] and "~" in row["cells"][3] for row in rows)

        browser.find_element(By.ID, "download-json").click()
        json_file = downloaded(tmp_path / "downloads", ".json")
        browser.find_element(By.ID, "download-csv").click()
        csv_file = downloaded(tmp_path / "downloads", ".csv")
    finally:
        browser.quit()

    saved = json.loads(json_file.read_text())
    assert json_file.name.startswith("emotion-detector-live-")
    results = saved["results"]
    assert len(results) >= 10 and saved["duration_ms"] == results[-1]["time_ms"] >= 2000
    assert [r["frame"] for r in results] == list(range(len(results)))
    times = [r["time_ms"] for r in results]
    assert times == sorted(times)
    # Boxes in pixels of the camera's frames (the video is 480×270), whatever size each sent frame had.
    assert {(r["width"], r["height"]) for r in results} == {(480, 270)}
    for face in (face for r in results for face in r["faces"]):
        x1, y1, x2, y2 = face["box"]
        assert -1 <= x1 < x2 <= 481 and -1 <= y1 < y2 <= 271
    faces = [face for r in results for face in r["faces"]]
    tracked = [face for face in faces if "id" in face]
    assert tracked and all(isinstance(face["id"], int) for face in tracked)
    assert len(tracked) >= 0.8 * len(faces)

    summary = {track["id"]: track for track in saved["summary"]}
    assert set(summary) == {face.get("id") for face in faces}  # None: the faces not tracked yet
    assert {"" if track_id is None else str(track_id) for track_id in summary} == {row["id"] for row in rows}  # all shown
    longest = max(summary.values(), key=lambda track: track["seen_s"])
    assert longest["seen_s"] >= 2.0 and longest["results"] >= 10
    for track in summary.values():
        assert track["results"] == sum(face.get("id") == track["id"] for face in faces)
        assert sum(track["expressions"].values()) == pytest.approx(1, abs=0.01)
        assert set(track["expressions"]) <= {*EMOTIONS, "uncertain"} and track["gender"] in ("female", "male")
        assert 0 < track["age_years_mean"] < 120

    table = list(csv.reader(io.StringIO(csv_file.read_text())))
    assert table[0] == CSV_COLUMNS
    assert len(table) - 1 == len(faces)  # one row per face per result
    first = dict(zip(table[0], table[1], strict=True))
    face = next(r for r in results if r["faces"])["faces"][0]
    assert first["id"] == str(face.get("id", "")) and first["emotion"] == face["emotion"]["label"]
    assert [float(first[k]) for k in ("x1", "y1", "x2", "y2")] == pytest.approx(face["box"])
    for row in table[1:]:
        assert sum(float(v) for k, v in zip(table[0], row, strict=True) if k.startswith("p_")) == pytest.approx(1, abs=1e-3)
    # Results only: nothing in either file looks like image data.
    for text in (json_file.read_text(), csv_file.read_text()):
        assert "data:image" not in text and "base64" not in text
    assert json_file.stat().st_size < 2_000_000


def test_live_recording_is_legible_on_a_phone(web, two_people_camera, tmp_path):
    browser = live_page(tmp_path, web.url, two_people_camera, (390, 844), scale=2)
    try:
        record_for_a_while(browser, 1.0)
        page_width = browser.execute_script("return document.documentElement.scrollWidth")
        assert page_width <= 390, wider_than_screen(browser)  # no sideways scrolling
        ARTIFACTS.mkdir(exist_ok=True)
        browser.execute_script("document.getElementById('record').scrollIntoView({block: 'start'});")
        browser.save_screenshot(str(ARTIFACTS / "live-record-390x844.png"))
        browser.execute_script("window.scrollTo(0, 0);")
        browser.save_screenshot(str(ARTIFACTS / "live-record-390x844-top.png"))
    finally:
        browser.quit()
