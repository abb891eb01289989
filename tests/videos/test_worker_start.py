"""Several workers started at once on the embedded queue (a fresh SQLite-backed kombu queue) all come up."""

from __future__ import annotations

import pytest

from tests.conftest import start_python, stop, wait_until

pytestmark = pytest.mark.slow  # real Celery worker processes

WORKER = ["-m", "celery", "-A", "emotion_detector.videos.jobs", "worker", "--loglevel", "INFO", "--concurrency", "1"]
WORKER += ["--without-gossip", "--without-mingle", "--without-heartbeat"]


@pytest.mark.parametrize("round_", range(3))
def test_workers_started_together_on_a_fresh_embedded_queue_all_start(tmp_path, round_):
    env = {
        "EMOTION_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "EMOTION_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'queue.db'}",
        "EMOTION_STORAGE_DIR": str(tmp_path / "videos"),
    }
    logs = [tmp_path / f"worker-{n}.log" for n in range(3)]
    workers = [start_python([*WORKER, "--hostname", f"start{n}@%h"], log, env) for n, log in enumerate(logs)]
    try:
        for worker, log in zip(workers, logs, strict=True):
            wait_until(lambda log=log: " ready." in log.read_text(), 90, f"worker {log.name}", worker)
        assert all(worker.poll() is None for worker in workers)
    finally:
        for worker in workers:
            stop(worker)
