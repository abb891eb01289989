"""The live-mode FramePipeline on real frames: the first frame is searched whole before it is answered, later
searches run in the background and never hold up an answer, a face that appears is picked up by the next one,
and frames keep their size with boxes in their pixels."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.pipeline import FaceAnalyzer, FramePipeline, RunningMode
from emotion_detector.settings import Settings
from tests.web.conftest import video_frames_as_jpeg


@pytest.fixture(scope="module")
def analyzer(inprocess_models, tmp_path_factory):
    settings = Settings(model_server="inprocess", model_cache_dir=tmp_path_factory.mktemp("model-cache"), detection_search_every_s=0.2)
    with ThreadPoolExecutor(max_workers=1) as background:
        yield FaceAnalyzer(create_detector(DetectorOptions.from_settings(settings)), inprocess_models, settings, background)


def session(analyzer) -> FramePipeline:
    return analyzer.pipeline(RunningMode.LIVE)


def jpeg(image: np.ndarray) -> bytes:
    return cv2.imencode(".jpg", image)[1].tobytes()


def test_the_first_frame_is_answered_with_its_faces(analyzer, shared_dir):
    first = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[0]
    analysis = session(analyzer).process(first)
    assert len(analysis.faces) == 1
    assert analysis.detection is not None and analysis.detection.detector == "centerface" and analysis.detection.min_face_px == 20


def test_a_face_that_appears_is_picked_up_by_a_background_search(analyzer, shared_dir):
    """Someone sits down at the back: a small face (about 30 px) appears beside the webcam's large one."""
    frames = [
        cv2.imdecode(np.frombuffer(data, np.uint8), 1) for data in video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")
    ]
    far = cv2.resize(cv2.imread(str(shared_dir / "media" / "images" / "obama.jpg")), (90, 112), interpolation=cv2.INTER_AREA)
    live = session(analyzer)
    assert len(live.process(jpeg(frames[0])).faces) == 1
    counts, started = [], time.monotonic()
    for number in range(1, 200):
        frame = frames[number % len(frames)].copy()
        frame[230:342, 520:610] = far  # in the bottom-right corner, away from the first face
        counts.append(len(live.process(jpeg(frame)).faces))
        if counts[-1] == 2 or time.monotonic() - started > 20:
            break
        time.sleep(0.02)  # a camera's pace: the search (every 0.2 s here) runs meanwhile
    assert counts[0] == 1  # not on the next frame: the search runs in the background...
    assert counts[-1] == 2  # ...and its faces join the frames after it


def test_an_odd_sized_frame_keeps_its_size_and_boxes_in_its_pixels(analyzer, shared_dir):
    frame = cv2.imdecode(np.frombuffer(video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[0], np.uint8), 1)
    analysis = session(analyzer).process(jpeg(cv2.resize(frame, (641, 361))))
    assert (analysis.width, analysis.height) == (641, 361)
    (face,) = analysis.faces
    assert 0 <= face.box_xyxy[0] < face.box_xyxy[2] <= 641 and 0 <= face.box_xyxy[1] < face.box_xyxy[3] <= 361


def test_a_frame_without_faces_says_from_which_size_it_looked(analyzer, shared_dir):
    capture = cv2.VideoCapture(str(shared_dir / "media" / "videos" / "no_face.mp4"))
    ok, frame = capture.read()
    assert ok
    answer = session(analyzer).process(jpeg(frame)).to_json()
    assert answer["faces"] == [] and answer["detection"] == {"detector": "centerface", "min_face_px": 20.0}
    assert "smaller than 20 px" in answer["message"]
