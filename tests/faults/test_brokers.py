"""The brokers restarted under load, each an instance of the test's own on its own port (the machine's shared
Redis and Mosquitto are never stopped):

- **Redis** (the video job queue and the rate-limit counters) stopped in the middle of a job and started
  again from its append-only file: live and image analysis go on meanwhile, an upload made meanwhile is
  accepted, and both jobs finish with exactly a clean run's rows.
- **Mosquitto** stopped while an edge device publishes and started again from its persistence file: every
  event reaches the dashboard's API once, in order, none missing."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
import time
import uuid

import pytest
import requests

from bench.video import looped_video
from tests.conftest import ROOT, free_port, start_python, stop, wait_until
from tests.edge.conftest import mosquitto
from tests.faults.conftest import LiveStream, redis_server
from tests.videos.conftest import VideoStack, new_postgres_database
from tests.web.conftest import start_web, video_frames_as_jpeg

pytestmark = pytest.mark.slow  # brokers, gunicorn, Celery workers, an edge device and a forwarder


def results_rows(stack: VideoStack, video_id: str) -> list[str]:
    return requests.get(f"{stack.api}/{video_id}/results.csv", timeout=10).text.splitlines()


def test_a_redis_restart_mid_job_loses_no_job_and_does_not_stop_analysis(tmp_path, shared_dir):
    video = shared_dir / "media" / "videos" / "single_face.mp4"
    frame = video_frames_as_jpeg(video)[0]
    image = (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes()
    port = free_port()
    with contextlib.ExitStack() as cleanup:
        database_url = cleanup.enter_context(new_postgres_database())
        broker = cleanup.enter_context(redis_server(tmp_path, port))
        env = {
            "EMOTION_DATABASE_URL": database_url,
            "EMOTION_BROKER_URL": f"redis://127.0.0.1:{port}/0",  # also the rate-limit counters' store
            "EMOTION_STORAGE_DIR": str(tmp_path / "storage"),
            "EMOTION_MODEL_SERVER": "inprocess",
            "EMOTION_SEGMENT_SECONDS": "1",
            "EMOTION_JOB_STALE_AFTER_S": "3",
        }
        stack = VideoStack("production", env, tmp_path / "storage", tmp_path)
        stack.web = start_web(tmp_path, "inprocess", **env)
        cleanup.callback(stack.stop)
        stack.start_worker()
        clean_id = stack.upload(video).json()["id"]
        assert stack.wait_finished(clean_id)["status"] == "done"
        clean_rows = results_rows(stack, clean_id)

        during_id = stack.upload(video).json()["id"]
        wait_until(lambda: requests.get(f"{stack.api}/{during_id}", timeout=10).json()["progress"] > 0, 60, "the job to start")
        stop(broker)  # SIGTERM: Redis writes its append-only file and exits
        stream = LiveStream(stack.web.ws_url)
        assert len(stream.send(frame)["faces"]) == 1
        stream.close()
        answer = requests.post(f"{stack.web.url}/api/v1/analyze", data=image, timeout=30)
        assert answer.status_code == 200, answer.text[:300]
        health = requests.get(f"{stack.web.url}/api/v1/health", timeout=30)
        assert health.status_code == 503 and health.json()["down"] == ["queue"]
        queued_meanwhile = stack.upload(video)
        assert queued_meanwhile.status_code == 202, queued_meanwhile.text[:300]

        cleanup.enter_context(redis_server(tmp_path, port))
        for video_id in (during_id, queued_meanwhile.json()["id"]):
            assert stack.wait_finished(video_id, timeout_s=180)["status"] == "done", video_id
            assert results_rows(stack, video_id) == clean_rows  # every row, once
        assert requests.get(f"{stack.web.url}/api/v1/health", timeout=30).status_code == 200


def test_a_mosquitto_restart_loses_no_edge_event(tmp_path):
    source = looped_video(tmp_path / "single_face_12s.mp4", 12)
    port, device_id = free_port(), f"fault-{uuid.uuid4().hex[:8]}"
    persistence = ["persistence true", f"persistence_location {tmp_path}/"]
    with contextlib.ExitStack() as cleanup:
        database_url = cleanup.enter_context(new_postgres_database())
        broker = cleanup.enter_context(contextlib.ExitStack())
        broker.enter_context(mosquitto(tmp_path, port, *persistence))
        env = {"EMOTION_DATABASE_URL": database_url}
        forward = ["-m", "emotion_detector", "forward", "--mqtt", f"mqtt://127.0.0.1:{port}"]
        forwarder = start_python(forward, tmp_path / "forwarder.log", env)
        cleanup.callback(stop, forwarder)
        web = start_web(tmp_path, "inprocess", **env)
        cleanup.callback(stop, web.process)
        command = [sys.executable, "-m", "emotion_detector", "edge", "--source", str(source), "--mqtt", f"mqtt://127.0.0.1:{port}"]
        command += ["--device-id", device_id, "--queue-path", str(tmp_path / "outbox.db"), "--interval-s", "0.5"]
        with open(tmp_path / "edge.log", "w") as log:
            device = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        cleanup.callback(stop, device)

        def stored() -> list[dict]:
            return requests.get(f"{web.url}/api/v1/events", params={"device_id": device_id, "limit": 1000}, timeout=10).json()["events"]

        wait_until(lambda: len(stored()) >= 3, 90, "the first events through the forwarder")
        broker.close()  # SIGTERM: Mosquitto saves its sessions and queued messages
        time.sleep(3)  # the device goes on seeing faces; its events wait on its disk
        broker.enter_context(mosquitto(tmp_path, port, *persistence))
        assert device.wait(timeout=120) == 0, (tmp_path / "edge.log").read_text()[-2000:]
        summary = re.search(r"(\d+) events delivered, (\d+) waiting on disk, (\d+) dropped", (tmp_path / "edge.log").read_text())
        delivered, waiting, dropped = map(int, summary.groups())
        assert (waiting, dropped) == (0, 0)
        # Events the device kept on disk through the outage arrive after later ones: wait for all of them.
        # On a loaded 2-core machine the forwarder's reconnection and the rest of the queue can take a while.
        try:
            wait_until(lambda: len(stored()) >= delivered, 90, f"the device's {delivered} events in the database")
        except TimeoutError as error:
            logs = {name: (tmp_path / name).read_text()[-3000:] for name in ("forwarder.log", "edge.log")}
            raise AssertionError(f"{error}: {len(stored())} stored; {logs}") from None
        events = stored()
        assert [event["seq"] for event in events] == list(range(delivered))  # from 0, in the device's order: none missing, none twice
        assert events[-1]["type"] == "track_end"
        assert len(events) > 10
        devices = {d["device_id"]: d for d in requests.get(f"{web.url}/api/v1/devices", timeout=10).json()["devices"]}
        assert devices[device_id]["state"] == "offline" and devices[device_id]["events"] == len(events)
