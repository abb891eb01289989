"""Debian's chromium driven by chromium-driver, for the browser tests (test-tool browser downloads fail here)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# Screenshots for a person to look at after a run: outside the checkout, which tests never write into.
ARTIFACTS = Path(os.environ.get("EMOTION_TEST_ARTIFACTS", Path(tempfile.gettempdir()) / "emotion-detector-test-artifacts"))


def chromium(tmp_path: Path, camera: Path | None, allow_camera: bool) -> webdriver.Chrome:
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
    return webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
