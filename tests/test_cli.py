"""``emotion-detector analyze`` and ``from emotion_detector import analyze`` in this process, on real media
and the shipped models (no model server): every kind of file source, the output formats, and the exit codes
and one-line messages for bad input, with the other sources' records kept."""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import signal
import time
from pathlib import Path

import av
import cv2
import pytest

from emotion_detector import analyze
from emotion_detector.__main__ import main
from emotion_detector.analyze_cli import CSV_COLUMNS
from tests.conftest import free_port

TWO_PEOPLE = "head-pose-face-detection-female-and-male.mp4"  # 56 frames, 480x270, two people side by side


@pytest.fixture(scope="module")
def media(shared_dir) -> Path:
    return shared_dir / "media"


def cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(["analyze", *args])
    out, err = capsys.readouterr()
    return code, out, err


def lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines()]


def test_an_image_gives_one_record_with_its_faces(capsys, media):
    code, out, err = cli(capsys, str(media / "images" / "two_people.jpg"))
    assert (code, err) == (0, "")
    (record,) = lines(out)
    assert {k: record[k] for k in ("frame", "timestamp_ms", "width", "height")} == {
        "frame": 0,
        "timestamp_ms": 0.0,
        "width": 1126,
        "height": 661,
    }
    assert len(record["faces"]) == 2 and all("id" not in face for face in record["faces"])  # a single image has no tracks
    for face in record["faces"]:
        assert abs(sum(face["emotion"]["probabilities"].values()) - 1) < 1e-3 and face["gender"]["label"] in ("female", "male")


def test_a_video_gives_a_record_per_frame_with_track_ids_and_a_summary_per_person(capsys, media):
    code, out, _ = cli(capsys, str(media / "videos" / TWO_PEOPLE), "--summary")
    assert code == 0
    records = lines(out)
    frames, people = [r for r in records if "frame" in r], [r for r in records if r.get("type") == "person"]
    assert [r["frame"] for r in frames] == list(range(56))
    assert all(0 < b["timestamp_ms"] - a["timestamp_ms"] < 100 for a, b in itertools.pairwise(frames))  # ~12.6 fps
    ids = {face["id"] for r in frames for face in r["faces"]}
    assert ids == {p["id"] for p in people} and len(people) == 2
    # After the people, one record for the source: which detector looked and from which face size.
    assert records[-1] == {
        "source": str(media / "videos" / TWO_PEOPLE),
        "type": "summary",
        "detector": "centerface",
        "min_face_px": 20.0,
        "frames": 56,
        "frames_with_faces": 56,
    }
    for person in people:
        seen = [face for r in frames for face in r["faces"] if face["id"] == person["id"]]
        assert person["frames_seen"] == len(seen) >= 50
        shown = [("uncertain" if f["emotion"]["uncertain"] else f["emotion"]["label"]) for f in seen]
        assert {k: v for k, v in person["expression_counts"].items() if v} == {k: shown.count(k) for k in set(shown)}


@pytest.mark.parametrize(("clip", "people"), [("classroom.mp4", 4), ("face-demographics-walking.mp4", 2)])
def test_the_faces_at_the_back_of_a_room_are_found_and_counted(capsys, media, clip, people):
    """480x270 clips of a classroom and a corridor: faces 14-25 px high, in every frame, each one person."""
    code, out, _ = cli(capsys, str(media / "videos" / clip), "--summary")
    records = lines(out)
    frames = [r for r in records if "faces" in r]
    assert code == 0 and all(len(r["faces"]) == people for r in frames)
    assert sum(r.get("counted", False) for r in records if r.get("type") == "person") == people


def test_a_source_without_faces_says_why_on_stderr_and_in_its_summary(capsys, media, tmp_path):
    ok, frame = cv2.VideoCapture(str(media / "videos" / "no_face.mp4")).read()
    assert ok
    sky = tmp_path / "sky.jpg"
    cv2.imwrite(str(sky), frame)
    code, out, err = cli(capsys, str(sky), "--summary")
    record, summary = lines(out)
    message = "No faces found. Faces smaller than 20 px high are not looked for: try a larger picture, or a closer view of the faces."
    assert code == 0 and record["faces"] == [] and err == f"emotion-detector: {sky}: {message}\n"  # stdout stays data
    assert summary == {
        "source": str(sky),
        "type": "summary",
        "detector": "centerface",
        "min_face_px": 20.0,
        "frames": 1,
        "frames_with_faces": 0,
        "message": message,
    }


def test_every_nth_frame_and_the_python_api_give_the_same_records(capsys, media):
    video = media / "videos" / TWO_PEOPLE
    code, out, _ = cli(capsys, str(video), "--every", "5")
    assert code == 0 and [r["frame"] for r in lines(out)] == list(range(0, 56, 5))
    assert [record.to_json() for record in analyze(video, every_n_frames=5)] == lines(out)


def test_a_folder_is_searched_recursively_for_images_and_videos(capsys, media, tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "a" / "b" / "face.jpg").write_bytes((media / "images" / "single_face.jpg").read_bytes())
    (tmp_path / "a" / "clip.mp4").write_bytes((media / "videos" / TWO_PEOPLE).read_bytes())
    (tmp_path / "notes.txt").write_text("not media")
    code, out, _ = cli(capsys, str(tmp_path), "--every", "28")
    assert code == 0
    assert [(Path(r["source"]).name, r["frame"]) for r in lines(out)] == [("face.jpg", 0), ("clip.mp4", 0), ("clip.mp4", 28)]


def test_csv_has_the_contracts_columns_and_a_row_per_face(capsys, media):
    code, out, _ = cli(
        capsys, str(media / "images" / "two_people.jpg"), str(media / "videos" / TWO_PEOPLE), "--every", "10", "--format", "csv"
    )
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    assert list(table[0]) == CSV_COLUMNS
    assert len(table) == 2 + 2 * 6 and table[0]["id"] == "" and table[2]["id"] in ("1", "2")
    for row in table:
        assert abs(sum(float(row[f"p_{e}"]) for e in ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")) - 1) < 2e-3


def test_csv_has_a_row_for_an_image_without_faces_so_it_shows_it_was_analysed(capsys, media, tmp_path):
    ok, sky = cv2.VideoCapture(str(media / "videos" / "no_face.mp4")).read()
    assert ok
    cv2.imwrite(str(tmp_path / "sky.jpg"), sky)
    code, out, _ = cli(capsys, str(tmp_path / "sky.jpg"), str(media / "images" / "obama_small.jpg"), "--format", "csv")
    assert code == 0
    table = list(csv.DictReader(io.StringIO(out)))
    first = table[0]
    assert (Path(first["source"]).name, first["frame"], first["id"], first["emotion"]) == ("sky.jpg", "0", "", "")
    assert all(value == "" for name, value in table[0].items() if name not in ("source", "frame", "timestamp_ms"))
    assert Path(table[1]["source"]).name == "obama_small.jpg" and table[1]["emotion"] and len(table) == 2


def test_json_is_one_array_and_output_goes_to_a_file(capsys, media, tmp_path):
    pictures = tmp_path / "pictures"
    pictures.mkdir()
    for name in ("two_people.jpg", "obama_small.jpg", "astronaut.png"):
        (pictures / name).write_bytes((media / "images" / name).read_bytes())
    target = tmp_path / "out.json"
    code, out, _ = cli(capsys, str(pictures), "--format", "json", "--output", str(target))
    assert (code, out) == (0, "")
    records = json.loads(target.read_text())
    assert len(records) == 3 and sum(len(r["faces"]) for r in records) == 4


def test_one_image_on_stdin(capsys, media, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO((media / "images" / "obama_small.jpg").read_bytes())))
    code, out, _ = cli(capsys, "-")
    (record,) = lines(out)
    assert code == 0 and record["source"] == "stdin" and len(record["faces"]) == 1


def test_the_annotated_video_has_every_frame(capsys, media, tmp_path):
    code, _, _ = cli(capsys, str(media / "videos" / TWO_PEOPLE), "--annotate", str(tmp_path / "annotated.mp4"))
    assert code == 0
    with av.open(str(tmp_path / "annotated.mp4")) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 56 and (frames[0].width, frames[0].height) == (480, 270)


@pytest.mark.parametrize(
    ("make_bad", "message"),
    [
        (lambda tmp: tmp / "missing.jpg", "missing.jpg: no such file or directory"),
        (lambda tmp: _write(tmp / "broken.jpg", b"\xff\xd8\xff\xe0 not really a jpeg"), "broken.jpg: "),
        (lambda tmp: _write(tmp / "notes.mp4", b"plain text, not a video"), "notes.mp4: not a video FFmpeg can read"),
        (lambda tmp: _write(tmp / "empty.png", b""), "empty.png: the frame is empty (0 bytes)"),
        (lambda tmp: (tmp / "empty-folder").mkdir() or tmp / "empty-folder", "empty-folder: no images or videos in this directory"),
        (lambda tmp: Path("7"), "7: camera 7 cannot be opened"),
    ],
)
def test_bad_input_is_one_line_naming_the_source_exit_2_and_the_other_sources_still_run(capsys, media, tmp_path, make_bad, message):
    bad = make_bad(tmp_path)
    code, out, err = cli(capsys, str(bad), str(media / "images" / "single_face.jpg"))
    assert code == 2
    (line,) = [line for line in err.splitlines() if line.startswith("emotion-detector:")]
    assert message in line and str(bad) in line
    (record,) = lines(out)  # the good source's record is there
    assert record["source"].endswith("single_face.jpg") and len(record["faces"]) == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--summary", "--format", "csv"], "use --format jsonl or json"),
        (["--annotate", "x.mp4"], "give exactly one such source"),
    ],
)
def test_options_that_cannot_work_together_are_refused(capsys, media, args, message):
    code, out, err = cli(capsys, str(media / "images" / "single_face.jpg"), *args)
    assert (code, out) == (2, "") and message in err


def test_a_model_server_that_is_down_is_one_line_and_exit_1(capsys, media):
    target = f"127.0.0.1:{free_port()}"  # nothing listens there
    code, out, err = cli(capsys, str(media / "videos" / "single_face.mp4"), "--model-server", target)
    assert (code, out) == (1, "")
    assert "Traceback" not in err
    (line,) = err.strip().splitlines()
    assert line.startswith(f"emotion-detector: model server {target} unavailable") and line.endswith("so far are complete")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_the_summary_counts_people_by_the_video_results_rule_and_ends_tracks_at_a_cut(capsys, media, tmp_path):
    """The CLI runs the one pipeline: a cut ends every track, and person records say whether each counts."""
    from tests.videos.test_shot_cuts import FIRST, SECOND, frames_of, write_video

    spliced = tmp_path / "spliced.mp4"
    first = frames_of(media / "videos" / FIRST)
    write_video(spliced, first + frames_of(media / "videos" / SECOND))
    code, out, _ = cli(capsys, str(spliced), "--summary")
    assert code == 0
    people = [r for r in lines(out) if r.get("type") == "person"]
    counted = [p for p in people if p["counted"]]
    assert [(p["first_frame"], p["last_frame"]) for p in counted] == [(0, len(first) - 1), (len(first), len(first) + 61)]
    assert all(p["seen_s"] >= 1.0 and p["mean_score"] >= 0.6 for p in counted)
    assert all(not p["counted"] for p in people if p not in counted)
    assert all(-1 <= p["valence_mean"] <= 1 and -1 <= p["arousal_mean"] <= 1 for p in people)


def test_ctrl_c_waits_for_a_record_and_its_annotated_frame_to_be_written_together():
    from emotion_detector.analyze_cli import DeferredInterrupt

    written = []
    with DeferredInterrupt() as interrupt:
        with pytest.raises(KeyboardInterrupt), interrupt.writing():
            written.append("annotated frame")
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C between the two writes
            written.append("record")
        assert written == ["annotated frame", "record"]
        with pytest.raises(KeyboardInterrupt):  # elsewhere it stops at once, as usual
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # Python's own handler is back
