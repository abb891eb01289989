"""Metrics from real processes: gunicorn with two workers (each request counted once, whichever worker
answers the scrape), the model server's path after real predictions, and a Celery worker's own port."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import requests
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from websockets.sync.client import connect

from tests.conftest import free_port, stop, wait_until
from tests.prometheus import value
from tests.videos.conftest import VideoStack, embedded_env
from tests.web.conftest import start_web, video_frames_as_jpeg

pytestmark = pytest.mark.slow  # gunicorn, the model server and a Celery worker as processes

REQUESTS = "emotion_detector_http_requests_total"
ANALYZE = {"route": "/api/v1/analyze", "method": "POST", "status": "200"}


def stale_counter(folder: Path, pid: int, count: float) -> None:
    """What a dead run left behind: an analyze counter of another process, as prometheus_client writes it."""
    stale = MmapedDict(str(folder / f"counter_{pid}.db"))
    key = mmap_key(REQUESTS.removesuffix("_total"), REQUESTS, list(ANALYZE), list(ANALYZE.values()), "HTTP requests answered, by route")
    stale.write_value(key, count, time.time())
    stale.close()


def test_two_workers_count_into_one_page_and_the_model_server_counts_their_predictions(tmp_path, model_server, shared_dir):
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    stale_counter(metrics_dir, pid=999_999, count=1000)  # emptied at start: not added to this run's
    web = start_web(tmp_path, model_server.grpc_target, WEB_CONCURRENCY="2", PROMETHEUS_MULTIPROC_DIR=str(metrics_dir))
    try:
        model_before = requests.get(f"{model_server.rest_url}/monitoring/prometheus/metrics", timeout=10).text
        image = (shared_dir / "media" / "images" / "obama.jpg").read_bytes()
        sent = 0
        # A new connection each time: the kernel spreads them over the two workers' sockets (SO_REUSEPORT).
        while sent < 4 or len(list(metrics_dir.glob("counter_*.db"))) < 2:
            assert sent < 60, f"the requests all went to one worker: {sorted(metrics_dir.iterdir())}"
            answer = requests.post(f"{web.url}/api/v1/analyze", data=image, headers={"Connection": "close"}, timeout=60)
            assert answer.status_code == 200 and answer.json()["faces"]
            sent += 1
        for _ in range(6):  # whichever worker answers the scrape, it adds up both
            text = requests.get(f"{web.url}/metrics", headers={"Connection": "close"}, timeout=10).text
            assert value(text, REQUESTS, **ANALYZE) == sent
            assert value(text, "emotion_detector_stage_duration_seconds_count", mode="image", stage="detect") == sent

        frame = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[0]
        with connect(web.ws_url, open_timeout=10) as socket:
            socket.recv(timeout=10)  # hello
            socket.send(frame)
            assert '"result"' in socket.recv(timeout=30)
            text = requests.get(f"{web.url}/metrics", timeout=10).text
            assert value(text, "emotion_detector_live_sockets_open") == 1
            assert value(text, "emotion_detector_live_frames_answered_total", outcome="result") == 1
        open_now = lambda: value(requests.get(f"{web.url}/metrics", timeout=10).text, "emotion_detector_live_sockets_open")  # noqa: E731
        wait_until(lambda: open_now() == 0, 10, "the socket counted as closed")

        model_after = requests.get(f"{model_server.rest_url}/monitoring/prometheus/metrics", timeout=10).text
        labels = {"model_name": "emotion", "entrypoint": "GRPC", "status": "OK"}
        count = "tfserving_request_count_total"
        predicted = value(model_after, count, **labels) - value(model_before, count, **labels)
        assert predicted >= sent + 1  # every analysed picture with a face asks for its expressions
    finally:
        stop(web.process)


def test_a_worker_serves_its_pool_processes_counts_and_the_temporary_directories_go_at_exit(tmp_path, model_server, shared_dir):
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    port = free_port()
    env = embedded_env(tmp_path) | {
        "EMOTION_STORAGE_DIR": str(tmp_path / "storage"),
        "EMOTION_MODEL_SERVER": model_server.grpc_target,
        "EMOTION_SEGMENT_SECONDS": "2",
        "EMOTION_WORKER_METRICS_PORT": str(port),
        "TMPDIR": str(temporary),  # where the web app and the worker make their metrics directories
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    assert "PROMETHEUS_MULTIPROC_DIR" not in os.environ
    stack = VideoStack("embedded", env, tmp_path / "storage", tmp_path)
    stack.web = start_web(tmp_path, model_server.grpc_target, **env)
    try:
        stack.start_worker(concurrency=2)
        assert {path.name.split("-metrics-")[0] for path in temporary.glob("emotion-detector-*-metrics-*")} == {
            "emotion-detector-web",
            "emotion-detector-worker",
        }
        video_id = stack.upload(shared_dir / "media" / "videos" / "no_face.mp4").json()["id"]
        assert stack.wait_finished(video_id)["status"] == "done"
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert value(text, "emotion_detector_worker_videos_processed_total") == 1
        assert value(text, "emotion_detector_worker_frames_processed_total") == 98  # every frame of the video, once
        assert value(text, "emotion_detector_worker_failures_total") == 0
        assert value(text, "emotion_detector_worker_task_duration_seconds_count", task="segment") >= 2  # segments of 2 s
        assert video_id not in text
        jobs = requests.get(f"{stack.web.url}/metrics", timeout=10).text
        assert value(jobs, "emotion_detector_video_jobs", state="done") == 1
    finally:
        stack.stop(worker_timeout_s=60)  # a warm shutdown on a loaded machine can take long; SIGKILL would leave the directory
    assert not list(temporary.glob("emotion-detector-*-metrics-*"))
