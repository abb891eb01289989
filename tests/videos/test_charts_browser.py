"""The video results charts (issue 19) in headless Chromium, on a real video analysed by a real worker: time axes
in seconds, legends, the smoothed/raw toggle, click to seek, hover values, the time share, dominant expression
per segment, valence/arousal, the group's expression mix and people on screen, PNG/SVG export, and the page
at 1280×800 and on a 390 px phone (screenshots in ARTIFACTS for a person to look at). Everything plotted comes
from the real results (raw and smoothed probabilities, valence/arousal, the person rule, shot cuts)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.browser import ARTIFACTS, chromium
from tests.videos.conftest import VideoStack, make_stack
from tests.videos.test_shot_cuts import frames_of, write_video

pytestmark = pytest.mark.slow

EMOTIONS = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]


@pytest.fixture(scope="module")
def stack(request, model_server, tmp_path_factory) -> VideoStack:
    running = make_stack("embedded", tmp_path_factory.mktemp("charts"), model_server, request)
    running.start_worker()
    yield running
    running.stop()


def js(browser, script: str, *args):
    return browser.execute_script(script, *args)


def save_screenshots(browser, width_px: int) -> None:
    """The people table, the charts and the group chart, each scrolled into view, for a person to look at."""
    for name, section in (("people", "#summary"), ("charts", "#charts"), ("charts-group", "#group")):
        js(browser, f"document.querySelector('{section}').scrollIntoView()")
        browser.save_screenshot(str(ARTIFACTS / f"video-{name}-{width_px}.png"))


def pointer(browser, element, kind: str, x: float, y: float) -> None:
    """A mouse event at (x, y), as fractions of the element's box."""
    js(
        browser,
        "const [c, kind, x, y] = arguments, r = c.getBoundingClientRect();"
        "c.dispatchEvent(new MouseEvent(kind, {clientX: r.left + r.width * x, clientY: r.top + r.height * y, bubbles: true}));",
        element,
        kind,
        x,
        y,
    )


def wait_for_file(folder: Path, suffix: str, timeout_s: float = 20) -> Path:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done = [p for p in folder.glob(f"*{suffix}") if p.stat().st_size > 0]
        if done:
            return done[0]
        time.sleep(0.2)
    raise AssertionError(f"no {suffix} downloaded into {folder}: {list(folder.iterdir())}")


def test_the_results_charts_are_readable_and_interactive(stack, shared_dir, tmp_path):
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    browser = chromium(tmp_path, camera=None, allow_camera=False)
    try:
        browser.set_window_size(1280, 800)
        browser.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
        browser.get(f"{stack.web.url}/videos")
        browser.find_element(By.ID, "file").send_keys(str(shared_dir / "media" / "videos" / "head-pose-face-detection-female-and-male.mp4"))
        WebDriverWait(browser, 20).until(lambda b: "/videos/" in b.current_url)
        WebDriverWait(browser, 300).until(lambda b: b.find_element(By.ID, "results").is_displayed())
        WebDriverWait(browser, 20).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#group svg.on-screen path"))
        results = requests.get(browser.current_url.replace("/videos/", "/api/v1/videos/") + "/results", timeout=10).json()
        duration = results["video"]["duration_s"]
        assert duration > 4

        # Per person, the expressions over time: a time axis in seconds with ticks, a legend, shot cuts.
        people = browser.find_elements(By.CSS_SELECTOR, "#charts .person-charts")
        assert len(people) == 2
        chart = people[0].find_element(By.CSS_SELECTOR, "svg.expressions")
        ticks = [t.text for t in chart.find_elements(By.CSS_SELECTOR, ".time-tick")]
        assert len(ticks) >= 4 and ticks[0] == "0 s" and all(re.fullmatch(r"\d+(\.\d+)? s", t) for t in ticks), ticks
        assert [t.text for t in chart.find_elements(By.CSS_SELECTOR, ".y-tick")] == ["0 %", "25 %", "50 %", "75 %", "100 %"]
        legend = [item.get_attribute("data-label") for item in chart.find_elements(By.CSS_SELECTOR, ".legend-item")]
        assert legend[:7] == EMOTIONS
        cuts = js(
            browser,
            "return window.fetch('/api/v1/videos/' + document.getElementById('job').dataset.id + '/results')"
            ".then(r => r.json()).then(r => r.video.shot_cuts_s);",
        )
        assert len(chart.find_elements(By.CSS_SELECTOR, ".shot-cut")) == len(cuts)
        if cuts:
            assert "shot cut" in legend
        assert len(chart.find_elements(By.CSS_SELECTOR, "path[data-emotion]")) == 7
        assert "smoothed" in chart.find_element(By.CSS_SELECTOR, ".chart-title").text

        # The raw values are one click away, and change the plotted paths.
        happy = "path[data-emotion='happy']"
        smoothed = people[0].find_element(By.CSS_SELECTOR, happy).get_attribute("d")
        people[0].find_element(By.CSS_SELECTOR, "button.show-raw").click()
        raw = people[0].find_element(By.CSS_SELECTOR, happy).get_attribute("d")
        assert raw != smoothed and raw.startswith("M")
        assert "raw" in people[0].find_element(By.CSS_SELECTOR, "svg.expressions .chart-title").text
        assert people[0].find_element(By.CSS_SELECTOR, "button.show-raw").get_attribute("aria-pressed") == "true"
        people[0].find_element(By.CSS_SELECTOR, "button.show-smoothed").click()
        assert people[0].find_element(By.CSS_SELECTOR, happy).get_attribute("d") == smoothed

        # Hover: the values under the pointer.
        chart = people[0].find_element(By.CSS_SELECTOR, "svg.expressions")
        pointer(browser, chart, "mousemove", 0.3, 0.6)
        tooltip = people[0].find_element(By.CSS_SELECTOR, ".chart-tooltip")
        assert tooltip.is_displayed()
        assert re.search(r"\d+\.\d+ s", tooltip.text) and "%" in tooltip.text, tooltip.text

        # Click to seek: the video jumps there, and the cursor of every time chart follows it.
        WebDriverWait(browser, 20).until(lambda b: js(b, "return document.getElementById('annotated').readyState") >= 1)
        pointer(browser, chart, "click", 0.75, 0.6)
        WebDriverWait(browser, 10).until(lambda b: js(b, "return document.getElementById('annotated').currentTime") > duration * 0.5)
        WebDriverWait(browser, 10).until(
            lambda b: all(float(c.get_attribute("x1")) > 100 for c in b.find_elements(By.CSS_SELECTOR, "svg .cursor"))
        )

        # Share of the time per expression (bars, uncertain included) and the dominant expression per segment.
        bars = people[0].find_elements(By.CSS_SELECTOR, "svg.time-share .bar")
        assert [b.get_attribute("data-label") for b in bars] == [*EMOTIONS, "uncertain"]
        assert all(re.fullmatch(r"\d+ % of the time", b.find_element(By.CSS_SELECTOR, ".bar-text").text) for b in bars)
        assert "of the time" in people[0].find_element(By.TAG_NAME, "h3").text
        assert "avg" not in browser.find_element(By.ID, "people").text
        segments = people[0].find_elements(By.CSS_SELECTOR, "svg.segments rect.segment")
        assert segments and all(s.get_attribute("data-expression") in [*EMOTIONS, "uncertain"] for s in segments)
        assert people[0].find_elements(By.CSS_SELECTOR, "svg.segments .time-tick")

        # Valence and arousal, said to be derived from the expressions.
        affect = people[0].find_element(By.CSS_SELECTOR, "svg.affect")
        assert "derived from expressions" in affect.find_element(By.CSS_SELECTOR, ".chart-title").text
        assert len(affect.find_elements(By.CSS_SELECTOR, "path[data-series]")) == 2

        # The group: expression mix over time and people on screen, each with its axes and legend.
        mix = browser.find_element(By.CSS_SELECTOR, "#group svg.mix")
        assert mix.find_elements(By.CSS_SELECTOR, ".time-tick")[0].text == "0 s"
        assert mix.find_elements(By.CSS_SELECTOR, ".y-tick")[-1].text == "100 %"
        assert mix.find_elements(By.CSS_SELECTOR, "rect[data-expression]") and mix.find_elements(By.CSS_SELECTOR, ".legend-item")
        on_screen = browser.find_element(By.CSS_SELECTOR, "#group svg.on-screen")
        assert on_screen.find_elements(By.CSS_SELECTOR, ".time-tick")[0].text == "0 s"
        assert [t.text for t in on_screen.find_elements(By.CSS_SELECTOR, ".y-tick")][:2] == ["0", "1"]
        assert on_screen.find_element(By.CSS_SELECTOR, "path[data-series='people']").get_attribute("d").startswith("M")

        # People counted by the stated rule, brief detections apart; links to the reports.
        rule = browser.find_element(By.ID, "person-rule").text
        assert re.search(r"seen for at least [\d.]+ s with a mean detection score of at least [\d.]+", rule)
        assert re.match(r"\d+ (person|people)", browser.find_element(By.ID, "people-count").text)
        assert browser.find_element(By.ID, "report-html").get_attribute("href").endswith("/report.html")
        assert browser.find_element(By.ID, "report-pdf").get_attribute("href").endswith("/report.pdf")

        # Export: each chart downloads as a PNG and as an SVG that stands on its own.
        people[0].find_element(By.CSS_SELECTOR, "button.export-svg").click()
        svg = wait_for_file(downloads, ".svg")
        text = svg.read_text()
        assert text.startswith("<svg") and 'xmlns="http://www.w3.org/2000/svg"' in text and ">0 s</text>" in text
        assert "cursor" not in text  # what only follows the video on the page is left out
        people[0].find_element(By.CSS_SELECTOR, "button.export-png").click()
        png = wait_for_file(downloads, ".png")
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
        browser.find_element(By.CSS_SELECTOR, "#group .chart-figure:first-child button.export-svg").click()
        WebDriverWait(browser, 10).until(lambda b: any("group-mix" in p.name for p in downloads.glob("*.svg")))

        # The HTML report, as a browser shows it (served under its own policy): the notice, the charts with
        # their time ticks, every person; nothing refused.
        video_page = browser.current_url
        browser.get(browser.find_element(By.ID, "report-html").get_attribute("href"))
        assert "not" in browser.find_element(By.ID, "notice").text and "feel" in browser.find_element(By.ID, "notice").text
        report_charts = browser.find_elements(By.CSS_SELECTOR, "svg")
        assert len(report_charts) >= 3 and any(">0 s<" in chart.get_attribute("outerHTML") for chart in report_charts)
        assert len(browser.find_elements(By.CSS_SELECTOR, "section.person")) == len(results["people"])
        assert all(image.size["width"] > 200 for image in report_charts[:2])  # drawn, not collapsed
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "report-html-1280.png"))
        browser.get(video_page)
        WebDriverWait(browser, 60).until(lambda b: b.find_elements(By.CSS_SELECTOR, "#group svg.on-screen path"))

        # Nothing the page's Content-Security-Policy refused, no script errors.
        problems = [entry["message"] for entry in browser.get_log("browser") if "favicon" not in entry["message"]]
        assert not [m for m in problems if "Content Security Policy" in m or "Uncaught" in m], problems

        # Legible at 1280×800 and on a 390 px phone: nothing wider than the screen, text at its real size.
        ARTIFACTS.mkdir(exist_ok=True)
        save_screenshots(browser, 1280)
        browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True})
        WebDriverWait(browser, 10).until(
            lambda b: all(int(s.get_attribute("width")) <= 390 for s in b.find_elements(By.CSS_SELECTOR, "svg.chart"))
        )
        wide = js(  # what sticks out, if anything (a table scrolls in its own box)
            browser,
            "return [...document.querySelectorAll('body *')]"
            ".filter(e => e.getBoundingClientRect().right > 391 && !e.closest('.table-scroll'))"
            ".map(e => `${e.tagName}.${e.getAttribute('class')}: ${Math.round(e.getBoundingClientRect().right)}`);",
        )
        assert js(browser, "return document.documentElement.scrollWidth") <= 390, wide
        font = js(browser, "const t = document.querySelector('svg.expressions .time-tick'); return t.getBoundingClientRect().height;")
        assert font >= 10  # drawn at the shown width, so the tick labels are not scaled down
        save_screenshots(browser, 390)
    finally:
        browser.quit()


def test_a_face_seen_briefly_before_a_cut_is_a_brief_detection_listed_apart(stack, shared_dir, tmp_path):
    """A real video made of 10 frames of one clip and then another clip: the cut ends the first face's track
    (0.4 s: under the rule), so the page counts one person, lists the brief detections apart (that face, and any
    other short track) and marks the cut."""
    videos = shared_dir / "media" / "videos"
    joined = tmp_path / "brief-then-cut.mp4"
    write_video(joined, frames_of(videos / "head-pose-face-detection-female.mp4")[:10] + frames_of(videos / "single_face.mp4"))
    browser = chromium(tmp_path, camera=None, allow_camera=False)
    try:
        browser.set_window_size(1280, 800)
        browser.get(f"{stack.web.url}/videos")
        browser.find_element(By.ID, "file").send_keys(str(joined))
        WebDriverWait(browser, 20).until(lambda b: "/videos/" in b.current_url)
        WebDriverWait(browser, 300).until(lambda b: b.find_element(By.ID, "results").is_displayed())
        count = browser.find_element(By.ID, "people-count").text
        brief = re.match(r"1 person, and (\d+) brief detections? listed apart \(not counted\)", count)
        assert brief, count
        assert browser.find_element(By.ID, "brief-section").is_displayed()
        assert len(browser.find_elements(By.CSS_SELECTOR, "#brief tr")) == int(brief.group(1)) >= 1
        counted_chart = browser.find_element(By.CSS_SELECTOR, "#charts .person-charts svg.expressions")
        assert len(counted_chart.find_elements(By.CSS_SELECTOR, ".shot-cut")) == 1  # the cut, on the time axis
    finally:
        browser.quit()
