"""The live websocket against the real web app (gunicorn + gevent) and the real model server, streaming real
videos frame by frame."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import threading
import time

import cv2
import numpy as np
import pytest
from websockets.sync.client import connect

from emotion_detector.labels import EMOTIONS, GENDERS
from tests.conftest import free_port, start_model_server, stop, wait_until
from tests.test_frames import jpeg_with_size, png_header_only
from tests.web.conftest import start_web, video_frames_as_jpeg

pytestmark = pytest.mark.slow  # the websocket of the web app under gunicorn, and model server processes stopped and paused


class LiveClient:
    # websockets, not simple-websocket's client: the latter can lose a message that arrives in the same
    # TCP read as the handshake answer (our hello), which showed up as a hang in about 1 connection in 10.
    def __init__(self, ws_url: str):
        self._context = contextlib.ExitStack()  # websockets wants its connection used as a context manager
        self.ws = self._context.enter_context(connect(ws_url, max_size=None, open_timeout=20))
        self.hello = self.receive()

    def receive(self, timeout: float = 20) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def send_frame(self, frame: bytes) -> dict:
        self.ws.send(frame)
        return self.receive()

    def close(self) -> None:
        self._context.close()


def assert_complete_face(face: dict, width: int, height: int) -> None:
    x1, y1, x2, y2 = face["box"]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert 0 < face["score"] <= 1
    assert face["emotion"]["label"] in EMOTIONS
    assert set(face["emotion"]["probabilities"]) == set(EMOTIONS)
    assert sum(face["emotion"]["probabilities"].values()) == pytest.approx(1, abs=0.01)
    assert face["emotion"]["probabilities"][face["emotion"]["label"]] == face["emotion"]["confidence"]
    assert 0 < face["age"]["years"] < 101
    assert face["gender"]["label"] in GENDERS and 0.5 <= face["gender"]["confidence"] <= 1


def test_hello_names_the_detector_and_models(web):
    client = LiveClient(web.ws_url)
    assert client.hello["type"] == "hello"
    assert client.hello["detector"] == {"name": "centerface", "model": "centerface.onnx", "degraded": False, "min_face_px": 20.0}
    assert set(client.hello["models"]) == {"emotion", "age_gender"}  # age and gender in one forward pass
    client.close()


def test_one_face_video_gives_one_complete_face_per_frame_with_a_stable_id(web, shared_dir):
    frames = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")
    client = LiveClient(web.ws_url)
    answers = [client.send_frame(frame) for frame in frames]
    client.close()
    assert [a["type"] for a in answers] == ["result"] * len(frames)
    assert [a["frame"] for a in answers] == list(range(1, len(frames) + 1))
    assert all(len(a["faces"]) == 1 for a in answers)
    for answer in answers:
        assert_complete_face(answer["faces"][0], answer["width"], answer["height"])
    assert {a["faces"][0]["id"] for a in answers} == {answers[0]["faces"][0]["id"]}
    assert set(answers[0]["timing_ms"]) >= {"decode", "detect", "models", "total"}


def test_a_room_streamed_live_shows_every_face_once_the_first_search_is_in(web, shared_dir):
    """classroom.mp4 (480x270) as a camera: four faces 14-22 px high. The first answers come before the first
    whole-picture search (it runs in the background); from then on, all four in every answer."""
    frames = video_frames_as_jpeg(shared_dir / "media" / "videos" / "classroom.mp4")
    client = LiveClient(web.ws_url)
    counts = []
    for frame in frames:
        answer = client.send_frame(frame)
        counts.append(len(answer["faces"]))
        assert answer["detection"] == {"detector": "centerface", "min_face_px": 20.0}
        time.sleep(0.05)  # a camera's pace, about 10 frames a second with the answer's time
    client.close()
    first = counts.index(4)
    assert first < 15 and counts[first:] == [4] * (len(counts) - first), counts


def test_two_people_each_keep_their_own_id(web, shared_dir):
    frames = video_frames_as_jpeg(shared_dir / "media" / "videos" / "head-pose-face-detection-female-and-male.mp4")
    client = LiveClient(web.ws_url)
    answers = []
    for frame in frames:
        answers.append(client.send_frame(frame))
        time.sleep(0.05)  # a camera's pace, about 10 frames a second with the answer's time
    client.close()
    # The stream's first search runs in the background: the first answers may come before it is in.
    counts = [len(a["faces"]) for a in answers]
    assert all(a["type"] == "result" for a in answers) and 2 in counts[:15], counts
    # A face first seen mid-stream gets its track id on its second frame (ByteTrack confirms a track then).
    answers = answers[counts.index(2) + 1 :]
    assert all(len(a["faces"]) == 2 for a in answers), counts
    left_to_right = [[f["id"] for f in sorted(a["faces"], key=lambda f: f["box"][0])] for a in answers]
    assert len(set(left_to_right[0])) == 2
    assert all(ids == left_to_right[0] for ids in left_to_right)
    for answer in answers:
        for face in answer["faces"]:
            assert_complete_face(face, answer["width"], answer["height"])


def test_bad_frames_get_errors_and_the_connection_stays_open(web, shared_dir):
    good = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[0]
    bad = {
        "empty_frame": b"",
        "unsupported_format": b"this is not an image",
        "truncated_frame": good[: len(good) // 2],
        "frame_too_large": good + b"\0" * (50 * 1024 * 1024),
        "image_too_large": jpeg_with_size(good, 20000, 20000),
    }
    client = LiveClient(web.ws_url)
    for code, frame in bad.items():
        answer = client.send_frame(frame)
        assert answer["type"] == "error" and answer["code"] == code, answer
        assert answer["message"]
    png_bomb = client.send_frame(png_header_only(20000, 20000))
    assert png_bomb["code"] == "image_too_large"
    client.ws.send("not json")
    assert client.receive()["code"] == "bad_message"
    answer = client.send_frame(good)
    assert answer["type"] == "result" and len(answer["faces"]) == 1
    client.close()
    assert web.process.poll() is None


def encoded(extension: str, image: np.ndarray) -> bytes:
    return cv2.imencode(extension, image)[1].tobytes()


ODD_FRAMES = {
    "random bytes": os.urandom(4096),
    "random bytes after a JPEG marker": b"\xff\xd8\xff" + os.urandom(4096),
    "10000x10 JPEG": encoded(".jpg", np.full((10, 10000, 3), 128, np.uint8)),
    "10x10000 PNG": encoded(".png", np.full((10000, 10, 3), 128, np.uint8)),
    "1x1 PNG": encoded(".png", np.zeros((1, 1, 3), np.uint8)),
    "grey PNG": encoded(".png", np.full((240, 320), 90, np.uint8)),
}
ODD_MESSAGES = {
    "nested 5,000 deep": "[" * 5000 + "]" * 5000,
    "object nested 5,000 deep": '{"a":' * 5000 + "1" + "}" * 5000,
    "not JSON": "hello",
    "unknown type": '{"type": "launch"}',
    "not an object": "[1, 2, 3]",
    "huge": json.dumps({"type": "config", "pad": "x" * 200_000}),
    "a config field that does not exist": '{"type": "config", "min_face_px": 10}',
}


def test_odd_frames_and_messages_never_close_the_socket_nor_print_tracebacks(web, shared_dir):
    good = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[0]
    client = LiveClient(web.ws_url)
    log_before = web.log_path.read_text()
    try:
        for name, frame in ODD_FRAMES.items():
            answer = client.send_frame(frame)
            assert answer["type"] in ("result", "error"), (name, answer)
            assert answer.get("code") != "internal_error", (name, answer)
            if answer["type"] == "result":  # a valid image: analysed, nothing found in a flat picture
                assert answer["faces"] == [], name
        for name, text in ODD_MESSAGES.items():
            client.ws.send(text)
            answer = client.receive()
            assert answer["type"] == "error" and answer["code"] == "bad_message", (name, answer)
        client.ws.send(json.dumps({"type": "ping", "t": 12}))
        assert client.receive() == {"type": "pong", "t": 12}
        assert len(client.send_frame(good)["faces"]) == 1
    finally:
        client.close()
    new_log = web.log_path.read_text()[len(log_before) :]
    assert "Traceback" not in new_log, new_log[-3000:]
    assert "rejected: unsupported_format" in new_log  # one line per rejected frame


def recover(client: LiveClient, frames: list[bytes], within_s: float) -> list[dict]:
    """Send frames until one gets a result (within ``within_s``); every answer, the result last."""
    answers: list[dict] = []

    def answered() -> bool:
        answers.append(client.send_frame(frames[len(answers) % len(frames)]))
        return answers[-1]["type"] == "result"

    wait_until(answered, within_s, "stream recovery")
    return answers


def test_stream_recovers_by_itself_when_the_model_server_comes_back(shared_dir, tmp_path):
    grpc_port, rest_port = free_port(), free_port()
    model = start_model_server(tmp_path, grpc_port=grpc_port, rest_port=rest_port)
    web = start_web(tmp_path, model.grpc_target)
    frames = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")
    client = LiveClient(web.ws_url)
    try:
        assert client.send_frame(frames[0])["type"] == "result"
        stop(model.process)
        down = [client.send_frame(frame) for frame in frames[1:4]]
        assert all(a["type"] == "error" and a["code"] == "model_unavailable" for a in down), down
        model = start_model_server(tmp_path, grpc_port=grpc_port, rest_port=rest_port)
        answers = recover(client, frames, within_s=3)
        assert all(a.get("code") == "model_unavailable" for a in answers[:-1]), answers
        assert len(answers[-1]["faces"]) == 1
        assert web.process.poll() is None
    finally:
        client.close()
        stop(web.process)
        stop(model.process)


def test_stream_survives_a_paused_model_server(shared_dir, tmp_path):
    """A model server that hangs (SIGSTOP) rather than dies: requests time out. A face that first appears
    during the outage gets its track there, but its age / gender measurement never arrives; once the server
    resumes, the face must be measured then, not carried over from a measurement that never happened."""
    model = start_model_server(tmp_path)
    web = start_web(tmp_path, model.grpc_target, EMOTION_MODEL_SERVER_TIMEOUT_S="0.5")
    first = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")
    second = video_frames_as_jpeg(shared_dir / "media" / "videos" / "head-pose-face-detection-female.mp4")
    client = LiveClient(web.ws_url)
    try:
        for frame in first[:3]:
            assert client.send_frame(frame)["type"] == "result"
        model.process.send_signal(signal.SIGSTOP)
        # Another face (from frame 8 on, she faces the camera): a new track, confirmed meanwhile.
        down = [client.send_frame(frame) for frame in second[8:11]]
        assert all(a["type"] == "error" and a["code"] == "model_unavailable" for a in down), down
        model.process.send_signal(signal.SIGCONT)
        answers = recover(client, second[11:], within_s=3)
        assert all(a.get("code") == "model_unavailable" for a in answers[:-1]), answers
        assert len(answers[-1]["faces"]) == 1 and answers[-1]["faces"][0]["age"]["years"] > 0, answers
        following = [client.send_frame(frame) for frame in second[20:30]]
        assert all(a["type"] == "result" and len(a["faces"]) == 1 for a in following), following
        assert web.process.poll() is None
        assert "Traceback" not in web.log_path.read_text()
    finally:
        model.process.send_signal(signal.SIGCONT)
        client.close()
        stop(web.process)
        stop(model.process)


def test_concurrent_clients_are_all_served(web, shared_dir):
    frames = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[:20]
    round_trips: dict[int, list[float]] = {}
    failures: list[str] = []

    def run(index: int) -> None:
        try:
            client = LiveClient(web.ws_url)
            times = []
            for frame in frames:
                started = time.perf_counter()
                answer = client.send_frame(frame)
                times.append(time.perf_counter() - started)
                if answer["type"] != "result":
                    failures.append(f"client {index}: {answer}")
            client.close()
            round_trips[index] = times
        except Exception as error:  # reported below, not swallowed
            failures.append(f"client {index}: {error!r}")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not failures, failures
    assert len(round_trips) == 6 and all(len(t) == len(frames) for t in round_trips.values())
    means = [statistics.fmean(t) for t in round_trips.values()]
    assert max(means) < 4 * min(means)  # no client starved while others were served
