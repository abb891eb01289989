"""Real videos through the API, real workers and a real model server, on SQLite + the local queue and on
PostgreSQL + Redis."""

from __future__ import annotations

import csv
import io
import time

import av
import pytest
import requests

from tests.videos.conftest import VideoStack, make_stack

pytestmark = pytest.mark.slow

TWO_PEOPLE = "head-pose-face-detection-female-and-male.mp4"  # 56 frames; both people visible in all of them


@pytest.fixture(scope="module", params=["embedded", "production"])
def stack(request, model_server, tmp_path_factory) -> VideoStack:
    running = make_stack(request.param, tmp_path_factory.mktemp(request.param), model_server, request, segment_seconds="2")
    running.start_worker()
    yield running
    running.stop()


def test_two_people_come_out_as_two_main_tracks_with_their_own_timelines(stack, shared_dir):
    answer = stack.upload(shared_dir / "media" / "videos" / TWO_PEOPLE)
    assert answer.status_code == 202, answer.text
    video_id = answer.json()["id"]
    status = stack.wait_finished(video_id)
    assert (status["status"], status["progress"]) == ("done", 1.0), status

    results = requests.get(f"{stack.api}/{video_id}/results", timeout=10).json()
    assert results["video"]["frames"] == 56 and results["video"]["frames_analysed"] == 56
    assert results["video"]["segments"] >= 2  # 2-second segments: the tracks had to be joined across them
    main = [person for person in results["people"] if person["main"]]
    assert len(main) == 2
    for person in main:
        assert person["frames_seen"] >= 0.8 * 56
        assert len(person["timeline"]) == person["frames_seen"]
        assert sum(person["expression_counts"].values()) == person["frames_seen"]
        for frame in person["timeline"]:  # each a face object of DESIGN.md §2
            assert frame["id"] == person["id"] and frame["emotion"]["label"] in frame["emotion"]["probabilities"]
            assert abs(sum(frame["emotion"]["probabilities"].values()) - 1) < 1e-3
            assert frame["gender"]["label"] in ("female", "male") and frame["age"]["years"] > 0
    # One person on each side of the frame, each keeping to their own side all the way through.
    centres = [[(f["box"][0] + f["box"][2]) / 2 for f in person["timeline"]] for person in main]
    left, right = sorted(centres, key=lambda xs: sum(xs) / len(xs))
    assert max(left) < min(right)

    table = list(csv.DictReader(io.StringIO(requests.get(f"{stack.api}/{video_id}/results.csv", timeout=10).text)))
    assert len(table) == sum(p["frames_seen"] for p in results["people"])
    assert {row["person"] for row in table} >= {str(p["id"]) for p in main}

    annotated = requests.get(f"{stack.api}/{video_id}/annotated", timeout=10)
    assert annotated.status_code == 200 and annotated.headers["Content-Type"] == "video/mp4"
    with av.open(io.BytesIO(annotated.content)) as container:  # drawn in parts, one per segment, and joined
        pts = [frame.pts for frame in container.decode(video=0)]
    assert len(pts) == 56 and pts == sorted(set(pts))
    assert not list((stack.storage_dir / video_id).glob("annotated-parts-*"))  # the parts are gone once joined


def test_a_video_without_faces_is_done_with_zero_tracks(stack, shared_dir):
    video_id = stack.upload(shared_dir / "media" / "videos" / "no_face.mp4").json()["id"]
    status = stack.wait_finished(video_id)
    assert status["status"] == "done", status
    results = requests.get(f"{stack.api}/{video_id}/results", timeout=10).json()
    assert results["people"] == []
    assert results["video"]["frames_analysed"] == 98
    # The results say which detector looked and the smallest face it looked for (the page's "no faces" says so).
    assert (results["video"]["detector"], results["video"]["min_face_px"]) == ("centerface", 20.0)
    assert requests.get(f"{stack.api}/{video_id}/results.csv", timeout=10).text.count("\n") == 1  # the header only


def test_a_classroom_video_gives_every_person_at_the_back_of_the_room(stack, shared_dir):
    """classroom.mp4 (480x270): four people whose faces are 14-22 px high, each a person in the results."""
    video_id = stack.upload(shared_dir / "media" / "videos" / "classroom.mp4").json()["id"]
    assert stack.wait_finished(video_id)["status"] == "done"
    results = requests.get(f"{stack.api}/{video_id}/results", timeout=10).json()
    assert results["video"]["people_counted"] == 4 and sum(p["counted"] for p in results["people"]) == 4
    assert all(p["frames_seen"] >= 40 for p in results["people"] if p["counted"])  # of 45 frames


def test_frames_can_be_sampled_and_delete_removes_rows_and_files(stack, shared_dir):
    video_id = stack.upload(shared_dir / "media" / "videos" / TWO_PEOPLE, every_n_frames=4).json()["id"]
    assert stack.wait_finished(video_id)["status"] == "done"
    results = requests.get(f"{stack.api}/{video_id}/results", timeout=10).json()
    assert results["video"]["frames_analysed"] == 14
    assert all(frame["frame"] % 4 == 0 for person in results["people"] for frame in person["timeline"])
    assert (stack.storage_dir / video_id).is_dir()

    assert requests.delete(f"{stack.api}/{video_id}", timeout=10).status_code == 204
    assert requests.get(f"{stack.api}/{video_id}", timeout=10).status_code == 404
    assert not (stack.storage_dir / video_id).exists()
    assert video_id not in {v["id"] for v in requests.get(stack.api, timeout=10).json()["videos"]}


def test_a_cancelled_job_stops_and_can_be_retried(stack, shared_dir):
    video_id = stack.upload(shared_dir / "media" / "videos" / "face_noface.mov").json()["id"]
    assert requests.post(f"{stack.api}/{video_id}/cancel", timeout=10).ok
    status = stack.wait_finished(video_id, timeout_s=60)
    assert status["status"] == "cancelled" and "error" not in status, status
    assert not list((stack.storage_dir / video_id).glob("annotated-parts-*"))

    assert requests.post(f"{stack.api}/{video_id}/retry", timeout=10).status_code == 202
    assert stack.wait_finished(video_id)["status"] == "done"
    assert requests.get(f"{stack.api}/{video_id}/results", timeout=10).json()["people"]


def test_progress_is_reported_while_a_job_runs(stack, shared_dir):
    video_id = stack.upload(shared_dir / "media" / "videos" / "face_noface.mov").json()["id"]
    seen = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        status = requests.get(f"{stack.api}/{video_id}", timeout=10).json()
        seen.add((status["status"], status["progress"]))
        if status["status"] not in ("queued", "running"):
            break
        time.sleep(0.2)
    running = sorted(progress for state, progress in seen if state == "running")
    assert status["status"] == "done"
    assert any(0 < progress < 1 for progress in running), seen
