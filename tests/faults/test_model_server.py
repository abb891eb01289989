"""The model server killed (SIGKILL) and started again, under the real web app, a real video worker and a
live stream: users are told the models are unavailable (never a closed socket or a 500), the video job waits
rather than fails, and all of it resumes by itself with nothing lost or doubled."""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from tests.conftest import free_port, start_model_server, stop, wait_until
from tests.faults.conftest import LiveStream
from tests.videos.conftest import make_stack
from tests.web.conftest import video_frames_as_jpeg

pytestmark = pytest.mark.slow  # a model server, gunicorn and a Celery worker


def test_a_killed_model_server_is_reported_and_everything_resumes_when_it_is_back(request, tmp_path, shared_dir):
    video = shared_dir / "media" / "videos" / "single_face.mp4"
    frames = video_frames_as_jpeg(video)
    image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()
    grpc_port, rest_port = free_port(), free_port()
    model = start_model_server(tmp_path, grpc_port=grpc_port, rest_port=rest_port)
    stack = make_stack("embedded", tmp_path, model, request, segment_seconds="1", job_stale_after_s="3")
    stream = None
    try:
        stack.start_worker()
        clean_id = stack.upload(video).json()["id"]
        assert stack.wait_finished(clean_id)["status"] == "done"
        clean_rows = requests.get(f"{stack.api}/{clean_id}/results.csv", timeout=10).text.splitlines()
        assert len(clean_rows) > 50

        stream = LiveStream(stack.web.ws_url)
        assert stream.send(frames[0])["type"] == "result"
        job_id = stack.upload(video).json()["id"]
        wait_until(lambda: requests.get(f"{stack.api}/{job_id}", timeout=10).json()["progress"] > 0, 60, "the job to start")
        os.kill(model.process.pid, signal.SIGKILL)
        model.process.wait()

        answers = [stream.send(frame) for frame in frames[1:4]]
        assert all(a["type"] == "error" and a["code"] == "model_unavailable" for a in answers), answers
        answer = requests.post(f"{stack.web.url}/api/v1/analyze", data=image, timeout=30)
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "model_unavailable"
        health = requests.get(f"{stack.web.url}/api/v1/health", timeout=30)
        assert health.status_code == 503 and health.json()["down"] == ["models"]
        time.sleep(2)  # the job's segment meets the outage and waits
        assert requests.get(f"{stack.api}/{job_id}", timeout=10).json()["status"] in ("queued", "running")

        model = start_model_server(tmp_path, grpc_port=grpc_port, rest_port=rest_port)
        wait_until(lambda: stream.send(frames[5])["type"] == "result", 10, "the live stream to resume")
        assert len(stream.send(frames[6])["faces"]) == 1
        # The resumed video job shares the model server (and this machine's two cores) meanwhile, so one
        # image's requests can meet the model server's deadline while its queue drains: within seconds, 200.
        wait_until(
            lambda: requests.post(f"{stack.web.url}/api/v1/analyze", data=image, timeout=30).status_code == 200,
            30,
            "image analysis to resume",
        )
        assert requests.get(f"{stack.web.url}/api/v1/health", timeout=30).status_code == 200
        assert stack.wait_finished(job_id)["status"] == "done"
        rows = requests.get(f"{stack.api}/{job_id}/results.csv", timeout=10).text.splitlines()
        assert rows == clean_rows  # every frame's row, once
        assert stack.web.process.poll() is None
    finally:
        if stream is not None:
            stream.close()
        stack.stop()
        stop(model.process)
