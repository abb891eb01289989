"""The live page in headless Firefox (Debian's firefox-esr), driven over WebDriver BiDi, the W3C protocol
Firefox speaks natively (no geckodriver: it cannot be downloaded here). Firefox cannot play a file as its
webcam; its built-in fake camera shows a moving test pattern, so this pins down that the page captures,
streams and gets answers in Firefox, while the Chromium tests check the labels on a real face."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from websockets.sync.client import connect

from tests.conftest import free_port, stop, wait_until

pytestmark = pytest.mark.slow  # Firefox against gunicorn and a model server process

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")
PREFS = {
    "media.navigator.streams.fake": True,  # a synthetic camera
    "media.navigator.permission.disabled": True,  # as if the user pressed Allow
    "browser.shell.checkDefaultBrowser": False,
    "datareporting.policy.dataSubmissionEnabled": False,
    "toolkit.telemetry.reportingpolicy.firstRun": False,
}


class BiDi:
    """Just enough of WebDriver BiDi: commands with ids, answers matched by id, events skipped."""

    def __init__(self, socket):
        self.socket = socket
        self.ids = itertools.count(1)

    def send(self, method: str, **params) -> dict:
        command_id = next(self.ids)
        self.socket.send(json.dumps({"id": command_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.socket.recv(timeout=60))
            if message.get("id") == command_id:
                if message.get("type") == "error":
                    raise RuntimeError(f"{method}: {message.get('error')}: {message.get('message')}")
                return message["result"]

    def evaluate(self, context: str, expression: str):
        answer = self.send("script.evaluate", expression=expression, target={"context": context}, awaitPromise=True)
        if answer["type"] != "success":
            raise RuntimeError(f"{expression}: {answer}")
        return answer["result"].get("value")


@pytest.fixture
def firefox(tmp_path: Path):
    if FIREFOX is None:
        pytest.fail("the Firefox test needs Debian's firefox-esr (apt-get install firefox-esr)")
    profile = tmp_path / "profile"
    profile.mkdir()
    (profile / "user.js").write_text("".join(f"user_pref({json.dumps(k)}, {json.dumps(v)});\n" for k, v in PREFS.items()))
    port = free_port()
    log = open(tmp_path / "firefox.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(
        [FIREFOX, "--headless", "--no-remote", "--profile", str(profile), f"--remote-debugging-port={port}", "about:blank"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_until(lambda: "WebDriver BiDi listening" in (tmp_path / "firefox.log").read_text(), 60, "firefox", process)
        with connect(f"ws://127.0.0.1:{port}/session", max_size=None, open_timeout=30) as socket:
            bidi = BiDi(socket)
            bidi.send("session.new", capabilities={})
            context = bidi.send("browsingContext.getTree")["contexts"][0]["context"]
            yield bidi, context
            bidi.send("session.end")
    finally:
        stop(process)
        log.close()


def test_live_page_streams_and_gets_results_in_firefox(web, firefox):
    bidi, context = firefox
    bidi.send("browsingContext.navigate", context=context, url=web.url, wait="complete")
    assert "Firefox" in bidi.evaluate(context, "navigator.userAgent")
    assert "expressions" in bidi.evaluate(context, "document.querySelector('footer').textContent")
    bidi.evaluate(context, "document.getElementById('start').click()")
    deadline = time.monotonic() + 30
    readout = {}
    while time.monotonic() < deadline:
        readout = json.loads(
            bidi.evaluate(
                context,
                "JSON.stringify({connection: document.getElementById('connection').textContent,"
                " fps: parseFloat(document.getElementById('fps').textContent),"
                " problem: document.getElementById('problem').hidden ? '' : document.getElementById('problem').textContent,"
                " playing: document.getElementById('video').readyState >= 2})",
            )
        )
        if readout["connection"] == "connected" and readout["fps"] > 0:
            break
        time.sleep(0.5)
    assert readout["problem"] == "", readout
    assert readout["playing"] and readout["connection"] == "connected" and readout["fps"] > 0, readout
