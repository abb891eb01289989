"""The dashboard in headless Chromium against gunicorn's gevent workers: rows the forwarder would store show up
on the open page without a reload (server-sent events), and the charts are legible."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator

import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.edge.messages import DeviceState, EventType
from emotion_detector.edge.models import Device, EdgeEvent
from emotion_detector.labels import EMOTIONS
from emotion_detector.videos.db import sessions
from tests.browser import ARTIFACTS, chromium
from tests.conftest import stop
from tests.web.conftest import RunningWeb, start_web

pytestmark = pytest.mark.slow  # headless Chromium against gunicorn

HH_MM = re.compile(r"^\d\d:\d\d$")
DOOR = "article.device[data-device-id='door-1']"


def now_ms() -> int:
    return int(time.time() * 1000)


def new_device(device_id: str, state: DeviceState, last_seen_ms: int) -> Device:
    return Device(device_id=device_id, state=state, last_seen_ms=last_seen_ms, version="1.0", dropped_events=0)


@pytest.fixture(scope="module")
def database_url(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('dashboard-db') / 'edge.db'}"


@pytest.fixture(scope="module")
def web(database_url, tmp_path_factory) -> Iterator[RunningWeb]:
    # The shipped models in the web process (no model server): the dashboard analyses nothing.
    running = start_web(tmp_path_factory.mktemp("web"), "inprocess", EMOTION_DATABASE_URL=database_url, WEB_CONCURRENCY="1")
    yield running
    stop(running.process)


@pytest.fixture
def db(web, database_url) -> sessionmaker[Session]:
    return sessions(database_url)  # the web app has migrated it


def add_events(db: sessionmaker[Session], device_id: str, at: list[tuple[int, str]], first_seq: int, uncertain: bool = False) -> list[str]:
    ids = [f"{device_id}-{first_seq + i}" for i in range(len(at))]
    with db.begin() as session:
        for seq, (event_id, (timestamp_ms, label)) in enumerate(zip(ids, at, strict=True), first_seq):
            face = {"box": [10.0, 10.0, 90.0, 90.0], "emotion": {"label": label, "confidence": 0.71, "uncertain": uncertain}}
            session.add(
                EdgeEvent(
                    event_id=event_id,
                    device_id=device_id,
                    seq=seq,
                    type=EventType.TRACK_UPDATE,
                    timestamp_ms=timestamp_ms,
                    track_id=seq % 3,
                    seen_ms=4200,
                    emotion=label,
                    face=face,
                    received_ms=timestamp_ms,
                )
            )
    return ids


def card_state(browser: WebDriver, device_id: str) -> dict | None:
    return browser.execute_script(
        "const card = [...document.querySelectorAll('#devices article.device')].find(c => c.dataset.deviceId === arguments[0]);"
        "return card && {badge: card.querySelector('.badge').textContent, seen: card.querySelector('.last-seen').textContent,"
        " ticks: [...card.querySelectorAll('svg .x-tick')].map(t => t.textContent),"
        " bars: card.querySelectorAll('svg rect[data-emotion]').length,"
        " legend: [...card.querySelectorAll('.legend span')].map(s => s.textContent)};",
        device_id,
    )


def feed_ids(browser: WebDriver) -> list[str]:
    return browser.execute_script("return [...document.querySelectorAll('#feed li')].map(li => li.dataset.eventId);")


def test_the_dashboard_shows_devices_and_events_as_they_are_stored(web, db, tmp_path):
    started_ms = now_ms()
    with db.begin() as session:
        session.add(new_device("door-1", DeviceState.OFFLINE, started_ms - 90_000))
    # Half an hour of history for the chart, three events a minute: neutral, then happy with some sad.
    labels = {m: "neutral" if m > 15 else "sad" if m % 4 == 0 else "happy" for m in range(1, 31)}
    history = [(started_ms - m * 60_000, label) for m, label in labels.items() for _ in range(3)]
    add_events(db, "door-1", history, 0)

    browser = chromium(tmp_path, camera=None, allow_camera=False)
    try:
        browser.set_window_size(1280, 800)
        browser.get(f"{web.url}/dashboard")
        # The page redraws a chart or the feed as events arrive: an element found just before is replaced.
        wait = WebDriverWait(browser, 10, ignored_exceptions=[StaleElementReferenceException])
        state = wait.until(lambda b: (s := card_state(b, "door-1")) and s["bars"] and s)
        assert state["badge"] == "offline" and "ago" in state["seen"]
        assert state["legend"] == list(EMOTIONS)
        assert state["ticks"] and all(HH_MM.match(t) for t in state["ticks"]), state["ticks"]
        assert browser.find_element(By.ID, "connection").text == "live"

        # The device comes online: the open page shows it (pushed, no reload).
        with db.begin() as session:
            session.execute(update(Device).where(Device.device_id == "door-1").values(state=DeviceState.ONLINE, last_seen_ms=now_ms()))
        wait.until(lambda b: card_state(b, "door-1")["badge"] == "online")

        # New events reach the live feed, newest on top, and a new device gets its card.
        bars_before = card_state(browser, "door-1")["bars"]
        new = add_events(db, "door-1", [(now_ms() + i, "surprise") for i in range(3)], 1000)
        wait.until(lambda b: feed_ids(b)[:3] == new[::-1])
        with db.begin() as session:
            session.add(new_device("kiosk-2", DeviceState.ONLINE, now_ms()))
        wait.until(lambda b: card_state(b, "kiosk-2") is not None)
        # The chart is fetched again after its device's events (within its few seconds' throttle).
        WebDriverWait(browser, 15, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda b: card_state(b, "door-1")["bars"] > bars_before
        )
        assert browser.execute_script("return document.querySelectorAll('#feed li').length") >= 3
        feed_text = browser.find_element(By.ID, "feed").text
        assert "door-1" in feed_text and "surprise 71%" in feed_text
        # A face below the model's calibrated threshold is worded as on every other page (was "sad?").
        [unsure] = add_events(db, "door-1", [(now_ms() + 10, "sad")], 2000, uncertain=True)
        wait.until(lambda b: feed_ids(b)[0] == unsure)
        assert "uncertain (maybe sad 71%)" in browser.find_element(By.CSS_SELECTOR, f"#feed li[data-event-id='{unsure}']").text

        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "dashboard-chromium.png"))
        shutil.copy(ARTIFACTS / "dashboard-chromium.png", tmp_path / "dashboard-chromium.png")

        # The last day: half-hour bars, ticks every three hours.
        browser.find_element(By.CSS_SELECTOR, f"{DOOR} button[data-window='day']").click()
        wait.until(lambda b: "last day" in b.find_element(By.CSS_SELECTOR, f"{DOOR} svg").get_attribute("aria-label"))
        ticks = card_state(browser, "door-1")["ticks"]
        assert len(ticks) >= 7 and all(HH_MM.match(t) for t in ticks), ticks
        browser.save_screenshot(str(ARTIFACTS / "dashboard-chromium-day.png"))
    finally:
        browser.quit()
