"""Shared fixtures: the reference data / media folder, free ports, starting real processes, the face models.

Two layers: ``pytest -m "not slow"`` runs in-process (models on ONNX Runtime here, temporary databases) and
starts no process; a test that starts one (a model server, gunicorn, Celery workers, a browser, a shell
script) is marked ``slow``, and the guard below fails any other test that tries.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import pytest
import requests

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOTION_SHARED_DIR", ROOT.parent / "shared"))
SHIPPED_MODELS = ROOT / "serving" / "models"  # the checkout's copy (serving.SHIPPED_MODELS when run from it)
YUNET = SHARED / "models" / "yunet" / "face_detection_yunet.onnx"

# Nothing a test runs may write into the checkout: the embedded database, queue and uploads default to
# instance/ in the checkout, so every test (and every process a test starts, which inherits this
# environment) gets them in a temporary directory instead, unless it sets its own.
_TEST_INSTANCE = Path(tempfile.mkdtemp(prefix="emotion-detector-tests-"))
os.environ |= {
    "EMOTION_DATABASE_URL": f"sqlite:///{_TEST_INSTANCE / 'emotion-detector.db'}",
    "EMOTION_BROKER_URL": f"sqla+sqlite:///{_TEST_INSTANCE / 'queue.db'}",
    "EMOTION_STORAGE_DIR": str(_TEST_INSTANCE / "videos"),
    "EMOTION_INSTANCE_DIR": str(_TEST_INSTANCE),
}


def pytest_unconfigure(config) -> None:
    shutil.rmtree(_TEST_INSTANCE, ignore_errors=True)


class ProcessStarted(AssertionError):
    pass


def _refuse_processes(what: str) -> Callable[..., None]:
    def refuse(*args, **kwargs) -> None:
        raise ProcessStarted(f"a test not marked slow started a process ({what} {str(args)[:200]}): mark it @pytest.mark.slow")

    return refuse


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    """The fast layer starts no process: for a test not marked slow (its fixtures included), starting one fails."""
    if item.get_closest_marker("slow") is not None:
        yield
        return
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(subprocess.Popen, "_execute_child", _refuse_processes("subprocess"))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system", "execv", "execve"):
            if hasattr(os, name):
                patch.setattr(os, name, _refuse_processes(f"os.{name}"))
        yield


def pytest_configure(config: pytest.Config) -> None:
    """The embedded defaults' data (SQLite database, queue, uploads) of every test and every process it starts
    goes to a temporary directory, never into the checkout or the user's data directory. Set before
    collection: importing emotion_detector.videos.jobs already reads the settings."""
    instance = tempfile.TemporaryDirectory(prefix="emotion-detector-tests-")
    config.add_cleanup(instance.cleanup)
    os.environ["EMOTION_INSTANCE_DIR"] = instance.name


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "data").is_dir():
        pytest.fail(f"reference data not found at {SHARED}; set EMOTION_SHARED_DIR")  # never skip silently
    return SHARED


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{what}: process exited with {process.returncode}")
        try:
            if check():
                return
        except (requests.ConnectionError, OSError):
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{what} not ready after {timeout_s} s")


def start_python(args: list[str], log_path: Path, env: dict | None = None) -> subprocess.Popen:
    log = open(log_path, "w")  # noqa: SIM115 - closed when the process is stopped
    return subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass(frozen=True)
class RunningServer:
    grpc_target: str
    rest_url: str
    process: subprocess.Popen
    log_path: Path


def start_model_server(tmp_path: Path, *extra: str, grpc_port: int | None = None, rest_port: int | None = None) -> RunningServer:
    grpc_port, rest_port = grpc_port or free_port(), rest_port or free_port()
    log_path = tmp_path / f"model-server-{grpc_port}.log"
    args = ["-m", "serving", "--host", "127.0.0.1", "--port", str(grpc_port), "--rest_api_port", str(rest_port)]
    process = start_python([*args, "--model_base_path", str(SHIPPED_MODELS), *extra], log_path)
    rest_url = f"http://127.0.0.1:{rest_port}"
    wait_until(lambda: requests.get(f"{rest_url}/readyz", timeout=1).ok, 60, "model server", process)
    return RunningServer(f"127.0.0.1:{grpc_port}", rest_url, process, log_path)


@pytest.fixture(scope="session")
def inprocess_models():
    """The shipped models on ONNX Runtime in this process (what the CLI and edge mode use by default)."""
    from emotion_detector.face_models import InProcessModels

    models = InProcessModels(intra_op_threads=1)
    yield models
    models.close()


@dataclass(frozen=True)
class ThreadServer:
    grpc_target: str
    server: object  # grpc.Server


def start_thread_model_server(model_config_file: Path | None = None) -> ThreadServer:
    """The model server's gRPC front end on a thread of this process: the real wire protocol, no process."""
    from serving.grpc_api import build_server, set_health
    from serving.registry import ModelRegistry, ServingOptions, discover, parse_model_config_file

    configs = parse_model_config_file(model_config_file) if model_config_file else discover(SHIPPED_MODELS)
    registry = ModelRegistry(configs, ServingOptions(intra_op_threads=1))
    registry.refresh()
    target = f"127.0.0.1:{free_port()}"
    server, health = build_server(registry, target, max_workers=4)
    set_health(health, registry.ready)
    server.start()
    return ThreadServer(target, server)


@pytest.fixture(scope="module")
def thread_model_server() -> ThreadServer:
    running = start_thread_model_server()
    yield running
    running.server.stop(grace=None)


@pytest.fixture(scope="module")
def model_server(tmp_path_factory) -> RunningServer:
    server = start_model_server(tmp_path_factory.mktemp("model-server"))
    yield server
    stop(server.process)


def video_as_mjpeg(video: Path, folder: Path) -> Path:
    """A video as Motion JPEG, which Chromium can play as a webcam."""
    path = folder / f"{video.stem}.mjpeg"
    capture = cv2.VideoCapture(str(video))
    with open(path, "wb") as out:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            out.write(cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return path


@pytest.fixture(scope="session")
def fake_camera(shared_dir, tmp_path_factory) -> Path:
    """single_face.mp4 as the webcam."""
    return video_as_mjpeg(shared_dir / "media" / "videos" / "single_face.mp4", tmp_path_factory.mktemp("camera"))
