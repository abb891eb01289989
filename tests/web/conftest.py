from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import requests

from tests.conftest import ROOT, YUNET, RunningServer, free_port, start_python, stop, wait_until


@dataclass(frozen=True)
class RunningWeb:
    url: str
    ws_url: str
    process: object
    log_path: Path


def start_web(tmp_path: Path, model_server_target: str, **env: str) -> RunningWeb:
    port = free_port()
    log_path = tmp_path / f"web-{port}.log"
    environment = {
        "PORT": str(port),
        "HOST": "127.0.0.1",
        "EMOTION_MODEL_SERVER": model_server_target,
        "EMOTION_YUNET_PATH": str(YUNET),
        **env,
    }
    process = start_python(["-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"], log_path, environment)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(f"{url}/", timeout=1).ok, 60, "web app", process)
    return RunningWeb(url, f"ws://127.0.0.1:{port}/ws/live", process, log_path)


@pytest.fixture(scope="module")
def web(model_server: RunningServer, tmp_path_factory) -> RunningWeb:
    running = start_web(tmp_path_factory.mktemp("web"), model_server.grpc_target)
    yield running
    stop(running.process)


def video_frames_as_jpeg(path: Path) -> list[bytes]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        frames.append(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 85])[1].tobytes())


def create_key(name: str, env: dict[str, str]) -> str:
    """An API key made by the real `emotion-detector keys create` command, in the database ``env`` names."""
    made = subprocess.run(
        [sys.executable, "-m", "emotion_detector", "keys", "create", name],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return made.stdout.strip()
