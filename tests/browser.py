"""Debian's chromium driven by chromium-driver, for the browser tests (test-tool browser downloads fail here)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Screenshots for a person to look at after a run: outside the checkout, which tests never write into.
ARTIFACTS = Path(os.environ.get("EMOTION_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "emotion-detector-test-artifacts"))


def chromium(tmp_path: Path, camera: Path | None, allow_camera: bool, network_log: bool = False) -> webdriver.Chrome:
    """``network_log``: keep the DevTools network events too, for failed_requests()."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("browser tests need Debian's chromium and chromium-driver (apt-get install chromium chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-quic",
        "--window-size=1100,1000",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--use-fake-device-for-media-stream",
    ):
        options.add_argument(flag)
    if camera:
        options.add_argument(f"--use-file-for-fake-video-capture={camera}")
    options.add_argument("--use-fake-ui-for-media-stream" if allow_camera else "--deny-permission-prompts")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", **({"performance": "ALL"} if network_log else {})})
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))


def console_problems(browser: webdriver.Chrome) -> list[str]:
    """What the console got since the last call at warning level or above: script errors, and the browser's own
    complaints (a socket closed while connecting, a failed load) that DevTools shows in red. Read once: the
    browser hands each entry out once."""
    return [f"{entry['level']} {entry['message']}" for entry in browser.get_log("browser") if entry["level"] in ("WARNING", "SEVERE")]


def failed_requests(browser: webdriver.Chrome) -> list[str]:
    """The page's requests that failed since the last call, from the DevTools network log (chromium(network_log=
    True)): answers of 400 and more, and loads that never got one (canceled ones aside: a video element cancels
    its range requests as it seeks). The browser's own requests (never sent by a page) are not the page's."""
    urls: dict[str, str] = browser.__dict__.setdefault("sent_urls", {})  # a load may fail after the last call
    failed = []
    for entry in browser.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            urls[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.responseReceived" and params["response"]["status"] >= 400:
            failed.append(f"{params['response']['status']} {params['response']['url']}")
        elif message["method"] == "Network.loadingFailed" and not params.get("canceled") and params["requestId"] in urls:
            failed.append(f"{params.get('errorText')} {urls[params['requestId']]}")
    return failed


def set_viewport(browser: webdriver.Chrome, width: int, height: int) -> None:
    """The page laid out as on a screen this size (a phone's under 600 px, with touch and its viewport rules)."""
    metrics = {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", metrics)
