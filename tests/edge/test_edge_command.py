"""``emotion-detector edge`` refuses bad input with a one-line message and exit 2, before loading any model;
a model server that is down ends the run with one error and exit 1."""

import logging
from pathlib import Path

import pytest

from emotion_detector.__main__ import main
from tests.conftest import free_port


@pytest.fixture
def video(shared_dir: Path) -> str:
    return str(shared_dir / "media" / "videos" / "single_face.mp4")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--device-id", "door/1", "--mqtt", "mqtt://127.0.0.1"], "--device-id 'door/1': 1 to 64 letters"),
        (["--device-id", "door-1"], "no broker: give --mqtt mqtt://host:1883 or set EMOTION_MQTT_URL"),
        (["--device-id", "door-1", "--mqtt", "http://127.0.0.1"], "must start with mqtt:// or mqtts://"),
        (["--device-id", "door-1", "--mqtt", "mqtt://127.0.0.1", "--cert-file", "c.pem"], "needs both"),
    ],
)
def test_bad_options_are_refused_with_a_message(
    arguments: list[str], message: str, video: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("EMOTION_MQTT_URL", raising=False)
    assert main(["edge", "--source", video, *arguments]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emotion-detector edge: ") and message in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("source", "message"), [("media/images/obama.jpg", "needs one camera, stream or video file"), ("absent.mp4", "no such file")]
)
def test_a_source_that_is_no_video_camera_or_stream_is_refused(
    source: str, message: str, shared_dir: Path, capsys: pytest.CaptureFixture[str]
):
    arguments = ["edge", "--source", str(shared_dir / source), "--device-id", "door-1", "--mqtt", "mqtt://127.0.0.1"]
    assert main(arguments) == 2
    assert message in capsys.readouterr().err


def test_the_interval_must_be_positive(video: str, capsys: pytest.CaptureFixture[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(["edge", "--source", video, "--device-id", "door-1", "--interval-s", "0"])
    assert exit_info.value.code == 2 and "must be more than 0, got 0" in capsys.readouterr().err


def test_a_model_server_that_is_down_ends_the_run_with_one_error_and_exit_1(video: str, tmp_path: Path, caplog: pytest.LogCaptureFixture):
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    broker = "mqtt://127.0.0.1:1883"  # the shared Mosquitto
    arguments = ["edge", "--source", video, "--device-id", "model-down", "--mqtt", broker, "--model-server", target, "--no-pace"]
    with caplog.at_level(logging.ERROR, logger="emotion_detector.edge.command"):
        assert main([*arguments, "--queue-path", str(tmp_path / "outbox.sqlite3")]) == 1
    (error,) = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert f"model server {target} unavailable" in error.getMessage()
