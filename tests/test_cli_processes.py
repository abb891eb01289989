"""``emotion-detector analyze`` as a real process: a real HTTP MJPEG stream (ffmpeg, from the imageio-ffmpeg
wheel, serving a real video at its frame rate) analysed at its pace, the same stream dropping mid-way, and
Ctrl-C on a long video."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import imageio_ffmpeg
import pytest

from tests.conftest import ROOT, free_port, wait_until

pytestmark = pytest.mark.slow


def serve_mjpeg(video: Path, port: int, loop: bool) -> subprocess.Popen:
    """ffmpeg as a one-client HTTP server sending ``video`` as multipart JPEG at the video's own frame rate."""
    command = [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-re"]
    command += ["-stream_loop", "-1"] if loop else []
    command += ["-i", str(video), "-an", "-f", "mpjpeg", "-q:v", "5", "-listen", "1", f"http://127.0.0.1:{port}/camera.mjpg"]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    # A connection attempt would be the server's one client: wait for the listening socket instead.
    wait_until(lambda: (f":{port:04X} " in Path("/proc/net/tcp").read_text() and not listening()) or True, 10, "ffmpeg", server)
    time.sleep(1.0)
    return server


def analyze(*args: str, **popen) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "emotion_detector", "analyze", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **popen,
    )


def test_a_real_stream_is_analysed_at_its_pace_with_track_ids(shared_dir):
    port = free_port()
    server = serve_mjpeg(shared_dir / "media" / "videos" / "single_face.mp4", port, loop=False)
    try:
        process = analyze(f"http://127.0.0.1:{port}/camera.mjpg", "--summary")
        out, err = process.communicate(timeout=60)
    finally:
        server.kill()
        server.wait()
    records = [json.loads(line) for line in out.splitlines()]
    frames = [r for r in records if "frame" in r]
    assert len(frames) >= 20, err  # 72 frames sent in 2.4 s; while the models load, the reader keeps only the newest
    assert [r["frame"] for r in frames] == sorted({r["frame"] for r in frames})
    assert all(len(r["faces"]) == 1 and r["faces"][0]["id"] == frames[-1]["faces"][0]["id"] for r in frames[-10:])
    timestamps = [r["timestamp_ms"] for r in frames]
    assert timestamps == sorted(timestamps) and timestamps[-1] > 1500  # the stream's clock: 2.4 s of video
    (person,) = [r for r in records if r.get("type") == "person"]
    assert person["frames_seen"] >= 20
    # The end of a live stream is reported like a drop; what was analysed is all there.
    assert process.returncode in (0, 2) and (process.returncode == 0 or "camera.mjpg" in err)


def test_a_stream_that_drops_mid_way_is_named_on_stderr_exit_2_and_its_records_stay(shared_dir):
    port = free_port()
    server = serve_mjpeg(shared_dir / "media" / "videos" / "single_face.mp4", port, loop=True)
    process = analyze(f"http://127.0.0.1:{port}/camera.mjpg", str(shared_dir / "media" / "images" / "biden.jpg"))
    try:
        time.sleep(6)
    finally:
        server.kill()  # SIGKILL: the connection just breaks
        server.wait()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2, err
    (message,) = [line for line in err.splitlines() if line.startswith("emotion-detector:")]
    assert f"http://127.0.0.1:{port}/camera.mjpg" in message and "broke off" in message
    records = [json.loads(line) for line in out.splitlines()]
    assert len([r for r in records if "camera.mjpg" in r["source"]]) >= 10
    assert records[-1]["source"].endswith("biden.jpg") and len(records[-1]["faces"]) == 1  # the next source still ran


def test_a_stream_that_does_not_answer_is_bad_input():
    process = analyze(f"http://127.0.0.1:{free_port()}/camera.mjpg")
    _, err = process.communicate(timeout=60)
    assert process.returncode == 2 and "cannot be opened" in err


def test_ctrl_c_stops_cleanly_with_what_was_written_intact(shared_dir, tmp_path):
    from bench.video import looped_video

    video = looped_video(tmp_path / "long.mp4", 60.0)
    output, annotated = tmp_path / "out.json", tmp_path / "annotated.mp4"
    process = analyze(str(video), "--format", "json", "--output", str(output), "--annotate", str(annotated))
    wait_until(lambda: output.exists() and output.stat().st_size > 20_000, 60, "the first records", process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130 and "interrupted" in err
    records = json.loads(output.read_text())  # a complete JSON array
    assert 10 < len(records) < 1800 and [r["frame"] for r in records] == list(range(len(records)))
    with av.open(str(annotated)) as container:  # a playable file with the frames analysed so far
        assert len(list(container.decode(video=0))) == len(records)
