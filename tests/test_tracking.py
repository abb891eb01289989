"""Track ids on real videos, and per-track smoothing."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions, YuNetDetector
from emotion_detector.tracking import AttributeSmoother, FaceAttributes, FaceTracker


def tracked_ids(shared_dir, video: str) -> list[list[int]]:
    detector = YuNetDetector(shared_dir / "models" / "yunet" / "face_detection_yunet.onnx", DetectorOptions())
    capture = cv2.VideoCapture(str(shared_dir / "media" / "videos" / video))
    tracker = FaceTracker(capture.get(cv2.CAP_PROP_FPS), lost_after_s=1.0)
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames
        detections = detector.detect(frame)
        ids = tracker.update(detections)
        frames.append([int(i) for i in ids[np.argsort(detections.xyxy[:, 0])]])  # left to right


def test_one_face_keeps_one_id_through_a_real_video(shared_dir):
    frames = tracked_ids(shared_dir, "single_face.mp4")
    assert len(frames) == 72
    assert all(ids == [frames[0][0]] for ids in frames)


def test_two_people_keep_their_own_ids(shared_dir):
    frames = tracked_ids(shared_dir, "head-pose-face-detection-female-and-male.mp4")
    assert all(len(ids) == 2 for ids in frames)
    left, right = frames[0]
    assert left != right and left >= 0 and right >= 0
    assert all(ids == [left, right] for ids in frames)


def test_a_face_that_leaves_and_comes_back_later_gets_a_new_id():
    tracker = FaceTracker(nominal_fps=10, lost_after_s=0.5)  # forgotten after 5 frames
    import supervision as sv

    def frame(boxes):
        return tracker.update(
            sv.Detections(xyxy=np.array(boxes, np.float32).reshape(-1, 4), confidence=np.full(len(boxes), 0.9, np.float32))
        )

    first = [frame([[100, 100, 200, 200]])[0] for _ in range(3)]
    for _ in range(10):
        frame([])
    again = [frame([[100, 100, 200, 200]])[0] for _ in range(3)]
    assert first[0] == first[1] == first[2] >= 0
    assert again[0] == -1 and again[1] == again[2] >= 0 and again[1] != first[0]  # new track, confirmed on its 2nd frame


def test_smoothing_averages_per_track_and_passes_untracked_faces_through():
    smoother = AttributeSmoother(new_frame_weight=0.5, forget_after_frames=5)
    happy = np.array([[0, 0, 0, 1, 0, 0, 0]], np.float32)
    sad = np.array([[0, 0, 0, 0, 1, 0, 0]], np.float32)
    male = np.array([[0.0, 1.0]], np.float32)
    smoother.update(np.array([7]), FaceAttributes(happy, np.array([30.0]), male))
    out = smoother.update(np.array([7]), FaceAttributes(sad, np.array([40.0]), male))
    np.testing.assert_allclose(out.emotion[0, 3:5], [0.5, 0.5])
    assert out.age_years[0] == pytest.approx(35.0)
    untracked = smoother.update(np.array([-1]), FaceAttributes(sad, np.array([50.0]), male))
    np.testing.assert_array_equal(untracked.emotion, sad)
