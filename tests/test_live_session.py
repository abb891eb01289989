"""The live-mode FramePipeline on a real stream: the half-size decode that a fixed-input detector allows changes nothing that
reaches the user, and small faces are still cropped from the full-size frame."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.pipeline import FaceAnalyzer, FramePipeline, RunningMode, Timer
from emotion_detector.settings import Settings
from tests.web.conftest import video_frames_as_jpeg


class AnySizeDetector:
    """The default detector, presented as one that needs the full-size frame (the decode it would get
    without the half-size shortcut)."""

    def __init__(self, detector):
        self.detector, self.name, self.model, self.degraded = detector, detector.name, detector.model, detector.degraded
        self.fixed_input_side_px = None

    def detect(self, image_bgr, max_input_side=None):
        return self.detector.detect(image_bgr, max_input_side)


@pytest.fixture(scope="module")
def sessions(inprocess_models):
    settings = Settings(model_server="inprocess")
    detector = create_detector(DetectorOptions.from_settings(settings))
    assert detector.fixed_input_side_px == 128  # BlazeFace, the default

    def session(detector) -> FramePipeline:
        return FaceAnalyzer(detector, inprocess_models, settings).pipeline(RunningMode.LIVE)

    return session(detector), session(AnySizeDetector(detector))


def test_half_size_decoding_gives_the_labels_of_a_full_size_decode(sessions, shared_dir):
    half, full = sessions
    for jpeg in video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4"):
        assert half._decode_and_detect(jpeg, Timer(), detect=True).scale == pytest.approx(2.0)  # the face is large: half size it is
        (a,), (b,) = half.process(jpeg).faces, full.process(jpeg).faces
        assert np.abs(np.subtract(a.box_xyxy, b.box_xyxy)).max() < 2  # frame pixels
        # The same label, except on a near tie (happy 0.52 / neutral 0.48), which the page shows as uncertain either way.
        same = a.emotion_probabilities.argmax() == b.emotion_probabilities.argmax()
        assert same or (a.emotion_uncertain and b.emotion_uncertain), (a.emotion_probabilities, b.emotion_probabilities)
        assert a.emotion_uncertain == b.emotion_uncertain or np.abs(a.emotion_probabilities.max() - a.emotion_uncertain_below) < 0.05
        assert np.abs(a.emotion_probabilities - b.emotion_probabilities).max() < 0.08
        assert a.age_years == pytest.approx(b.age_years, abs=2.5)
        assert a.gender_probabilities.argmax() == b.gender_probabilities.argmax()


def test_a_small_face_is_cropped_from_the_full_size_frame(sessions, shared_dir):
    half, _ = sessions
    frame = cv2.imdecode(np.frombuffer(video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[0], np.uint8), 1)
    small = cv2.imencode(".jpg", cv2.resize(frame, (320, 180), interpolation=cv2.INTER_AREA))[1].tobytes()
    frame = half._decode_and_detect(small, Timer(), detect=True)
    width = frame.detections.xyxy[0, 2] - frame.detections.xyxy[0, 0]
    assert width < half.analyzer.full_resolution_below_face_px()
    assert frame.scale == 1.0 and frame.image.shape[:2] == (180, 320)
    assert half.process(small).width == 320


def test_an_odd_sized_frame_keeps_its_size_and_boxes_in_its_pixels(sessions, shared_dir):
    half, _ = sessions
    frame = cv2.imdecode(np.frombuffer(video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[0], np.uint8), 1)
    odd = cv2.imencode(".jpg", cv2.resize(frame, (641, 361)))[1].tobytes()
    analysis = half.process(odd)
    assert (analysis.width, analysis.height) == (641, 361)
    (face,) = analysis.faces
    assert 0 <= face.box_xyxy[0] < face.box_xyxy[2] <= 641 and 0 <= face.box_xyxy[1] < face.box_xyxy[3] <= 361
