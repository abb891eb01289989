"""A worker SIGKILLed in the middle of a job: another worker picks the job up and it finishes with exactly
the rows a clean run gives (PostgreSQL + Redis, the production path)."""

from __future__ import annotations

import time

import pytest
import requests
from sqlalchemy import create_engine, text

from tests.videos.conftest import VideoStack, make_stack

pytestmark = pytest.mark.slow

VIDEO = "face_noface.mov"  # 169 frames at 960x540: several 1-second segments, long enough to interrupt


@pytest.fixture(scope="module")
def stack(request, model_server, tmp_path_factory) -> VideoStack:
    running = make_stack("production", tmp_path_factory.mktemp("crash"), model_server, request, segment_seconds="1", job_stale_after_s="3")
    yield running
    running.stop()


def segment_states(stack: VideoStack, video_id: str) -> list[tuple[str, int]]:
    engine = create_engine(stack.env["EMOTION_DATABASE_URL"])
    with engine.connect() as connection:
        rows = connection.execute(
            text('SELECT status, attempts FROM segments WHERE video_id = :id ORDER BY "index"'), {"id": video_id}
        ).all()
    engine.dispose()
    return [tuple(row) for row in rows]


def result_rows(stack: VideoStack, video_id: str) -> list[str]:
    lines = requests.get(f"{stack.api}/{video_id}/results.csv", timeout=10).text.splitlines()
    return lines[1:]


def test_a_job_survives_its_worker_being_killed(stack, shared_dir):
    path = shared_dir / "media" / "videos" / VIDEO

    worker = stack.start_worker("clean")
    clean_id = stack.upload(path).json()["id"]
    assert stack.wait_finished(clean_id)["status"] == "done"
    clean_rows = result_rows(stack, clean_id)
    assert len(clean_rows) > 50

    crashed_id = stack.upload(path).json()["id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # kill it once some segments are done and one is being analysed
        states = segment_states(stack, crashed_id)
        if any(s == "done" for s, _ in states) and any(s == "running" for s, _ in states):
            break
        time.sleep(0.05)
    else:
        pytest.fail(f"the job never reached the middle: {segment_states(stack, crashed_id)}")
    stack.kill_worker(worker)
    interrupted = segment_states(stack, crashed_id)
    assert requests.get(f"{stack.api}/{crashed_id}", timeout=10).json()["status"] == "running"

    stack.start_worker("rescuer")
    status = stack.wait_finished(crashed_id)
    assert status["status"] == "done", status
    after = segment_states(stack, crashed_id)
    assert all(s == "done" for s, _ in after)
    assert any(attempts >= 2 for _, attempts in after), (interrupted, after)  # a segment really was taken over
    assert result_rows(stack, crashed_id) == clean_rows
