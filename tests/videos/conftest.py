"""Video jobs end to end: the web app, real Celery workers and a real model server, on either backend.

- ``embedded``: SQLite and kombu's SQLite-backed queue (what ``make run`` uses on a fresh laptop);
- ``production``: PostgreSQL and Redis on this machine (a fresh database and Redis db per test module).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
import redis
import requests

from tests.conftest import ROOT, YUNET, RunningServer, wait_until
from tests.web.conftest import RunningWeb, start_web

POSTGRES_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REDIS_URL = "redis://127.0.0.1:6379"
REDIS_TEST_DB = 11


@dataclass
class VideoStack:
    """One backend's database and queue, with a web app and workers started against them."""

    backend: str
    env: dict[str, str]
    storage_dir: Path
    log_dir: Path
    web: RunningWeb | None = None
    workers: list[subprocess.Popen] = field(default_factory=list)

    def start_worker(self, name: str = "w1", concurrency: int = 1) -> subprocess.Popen:
        log_path = self.log_dir / f"worker-{name}-{len(self.workers)}.log"
        log = open(log_path, "w")  # noqa: SIM115 - closed with the process
        args = ["-m", "celery", "-A", "emotion_detector.videos.jobs", "worker", "--loglevel", "INFO", "--concurrency", str(concurrency)]
        args += ["--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h", "--without-gossip", "--without-mingle", "--without-heartbeat"]
        # Its own process group, so a test can SIGKILL the worker with its pool children in one go.
        process = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env}, start_new_session=True
        )
        wait_until(lambda: " ready." in log_path.read_text(), 90, f"celery worker {name}", process)
        self.workers.append(process)
        return process

    def kill_worker(self, process: subprocess.Popen, sig: int = signal.SIGKILL, timeout_s: float = 15) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # a warm shutdown that takes too long
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        self.workers.remove(process)

    def stop(self, worker_timeout_s: float = 15) -> None:
        """Workers get a warm shutdown (SIGTERM), then SIGKILL after ``worker_timeout_s``."""
        for process in list(self.workers):
            self.kill_worker(process, signal.SIGTERM, worker_timeout_s)
        if self.web is not None:
            self.web.process.terminate()
            self.web.process.wait(timeout=10)

    # ---- API helpers -------------------------------------------------------------------------------------

    @property
    def api(self) -> str:
        return f"{self.web.url}/api/v1/videos"

    def upload(self, path: Path, **params) -> requests.Response:
        with open(path, "rb") as file:
            return requests.post(self.api, files={"video": (path.name, file, "video/mp4")}, params=params, timeout=60)

    def wait_finished(self, video_id: str, timeout_s: float = 300) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = requests.get(f"{self.api}/{video_id}", timeout=10).json()
            if status["status"] not in ("queued", "running"):
                return status
            time.sleep(0.5)
        raise TimeoutError(f"video {video_id} still {status} after {timeout_s} s; logs in {self.log_dir}")


def embedded_env(tmp: Path) -> dict[str, str]:
    return {"EMOTION_DATABASE_URL": f"sqlite:///{tmp / 'videos.db'}", "EMOTION_BROKER_URL": f"sqla+sqlite:///{tmp / 'queue.db'}"}


def embedded_settings(tmp: Path, **overrides: Any) -> dict[str, Any]:
    """create_app settings for the embedded stack (SQLite, SQLite queue, in-process models) in ``tmp``."""
    return {
        "model_server": "inprocess",
        "database_url": f"sqlite:///{tmp / 'videos.db'}",
        "broker_url": f"sqla+sqlite:///{tmp / 'queue.db'}",
        "storage_dir": tmp / "storage",
        **overrides,
    }


@contextlib.contextmanager
def new_postgres_database() -> Iterator[str]:
    name = f"emotion_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with new_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def redis_broker() -> Iterator[str]:
    url = f"{REDIS_URL}/{REDIS_TEST_DB}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def make_stack(backend: str, tmp: Path, model_server: RunningServer, request, **settings: str) -> VideoStack:
    if backend == "embedded":
        env = embedded_env(tmp)
    else:
        env = {
            "EMOTION_DATABASE_URL": request.getfixturevalue("postgres_database"),
            "EMOTION_BROKER_URL": request.getfixturevalue("redis_broker"),
        }
    storage = tmp / "storage"
    env |= {
        "EMOTION_STORAGE_DIR": str(storage),
        "EMOTION_MODEL_SERVER": model_server.grpc_target,
        "EMOTION_YUNET_PATH": str(YUNET),
        **{f"EMOTION_{key.upper()}": value for key, value in settings.items()},
    }
    stack = VideoStack(backend, env, storage, tmp)
    stack.web = start_web(tmp, model_server.grpc_target, **env)
    return stack
