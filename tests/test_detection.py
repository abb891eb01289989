"""YuNet and Haar on real photos: faces where there are faces, none where there are none (BlazeFace: test_blazeface.py)."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
import supervision as sv

from emotion_detector.detection import DetectionSizer, DetectorOptions, HaarDetector, YuNetDetector, create_detector, nose_along_eyes


@pytest.fixture(scope="module")
def detectors(shared_dir) -> dict:
    options = DetectorOptions()  # the product defaults: 480 px detection copy, score >= 0.7, YuNet on ONNX Runtime
    yunet = shared_dir / "models" / "yunet" / "face_detection_yunet.onnx"
    return {
        "yunet": YuNetDetector(yunet, options),
        "yunet-opencv": YuNetDetector(yunet, dataclasses.replace(options, yunet_runtime="opencv")),
        "haar": HaarDetector(options),
    }


def image(shared_dir, name: str) -> np.ndarray:
    return cv2.imread(str(shared_dir / "media" / "images" / name))


@pytest.mark.parametrize("detector_name", ["yunet", "yunet-opencv", "haar"])
@pytest.mark.parametrize(
    ("name", "faces"), [("single_face.jpg", 1), ("obama.jpg", 1), ("biden.jpg", 1), ("two_people.jpg", 2), ("BWPictureHuman.jpg", 0)]
)
def test_faces_found_where_there_are_faces(detectors, shared_dir, detector_name, name, faces):
    picture = image(shared_dir, name)
    found = detectors[detector_name].detect(picture)
    assert len(found) == faces
    height, width = picture.shape[:2]
    assert ((found.xyxy >= 0) & (found.xyxy <= [width, height, width, height])).all()
    assert ((found.confidence > 0) & (found.confidence <= 1)).all()


def test_yunet_finds_most_of_a_group(detectors, shared_dir):
    assert len(detectors["yunet"].detect(image(shared_dir, "multi_face.jpg"))) >= 4  # 5 people, one half turned away


@pytest.mark.parametrize("detector_name", ["yunet", "yunet-opencv", "haar"])
def test_no_face_video_frame(detectors, shared_dir, detector_name):
    capture = cv2.VideoCapture(str(shared_dir / "media" / "videos" / "no_face.mp4"))
    frames = []
    for _ in range(3):
        ok, frame = capture.read()
        assert ok
        frames.append(frame)
        for _ in range(10):
            capture.read()
    assert all(len(detectors[detector_name].detect(frame)) == 0 for frame in frames)


@pytest.mark.parametrize("name", ["single_face.jpg", "obama.jpg", "two_people.jpg", "multi_face.jpg"])
def test_yunet_on_onnx_runtime_finds_the_same_faces_as_cv2_face_detector_yn(detectors, shared_dir, name):
    picture = image(shared_dir, name)
    ours, opencv = detectors["yunet"].detect(picture), detectors["yunet-opencv"].detect(picture)
    assert len(ours) == len(opencv) > 0
    order_ours, order_opencv = np.argsort(ours.xyxy[:, 0]), np.argsort(opencv.xyxy[:, 0])
    np.testing.assert_allclose(ours.xyxy[order_ours], opencv.xyxy[order_opencv], atol=0.01)  # pixels of the photo
    np.testing.assert_allclose(ours.confidence[order_ours], opencv.confidence[order_opencv], atol=1e-4)
    landmarks_ours, landmarks_opencv = ours.data["landmarks"][order_ours], opencv.data["landmarks"][order_opencv]
    np.testing.assert_allclose(landmarks_ours, landmarks_opencv, atol=0.01)


def test_both_yunet_runtimes_agree_on_every_frame_of_the_two_person_video(detectors, shared_dir):
    capture = cv2.VideoCapture(str(shared_dir / "media" / "videos" / "head-pose-face-detection-female-and-male.mp4"))
    frames_with_faces = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        ours, opencv = detectors["yunet"].detect(frame), detectors["yunet-opencv"].detect(frame)
        assert len(ours) == len(opencv)
        np.testing.assert_allclose(np.sort(ours.xyxy, axis=0), np.sort(opencv.xyxy, axis=0), atol=0.01)
        frames_with_faces += len(ours) > 0
    assert frames_with_faces >= 50  # of 56


def test_yunet_gives_five_landmarks_inside_the_box(detectors, shared_dir):
    found = detectors["yunet"].detect(image(shared_dir, "obama.jpg"))
    (x1, y1, x2, y2), landmarks = found.xyxy[0], found.data["landmarks"][0]
    assert landmarks.shape == (5, 2)
    assert ((landmarks[:, 0] > x1) & (landmarks[:, 0] < x2) & (landmarks[:, 1] > y1) & (landmarks[:, 1] < y2)).all()


def test_yunet_and_haar_only_when_asked_for(tmp_path, shared_dir):
    yunet = shared_dir / "models/yunet/face_detection_yunet.onnx"
    assert create_detector(DetectorOptions(kind="yunet", yunet_path=yunet)).name == "yunet"
    with pytest.raises(FileNotFoundError, match="models download"):
        create_detector(DetectorOptions(kind="yunet", yunet_path=tmp_path / "missing.onnx"))
    haar = create_detector(DetectorOptions(kind="haar"))
    assert haar.name == "haar" and haar.degraded  # auto's choices: tests/test_blazeface.py


@pytest.mark.parametrize(
    ("nose", "expected"),
    [((50, 60), 0.5), ((40, 60), 0.25), ((10, 60), -0.5), ((70, 60), 1.0)],
)
def test_nose_along_eyes_measures_head_turn(nose, expected):
    eyes_then_nose = np.array([[[30, 40], [70, 40], nose, [35, 80], [65, 80]]], np.float32)
    np.testing.assert_allclose(nose_along_eyes(eyes_then_nose), [expected], atol=1e-6)


def test_nose_along_eyes_ignores_head_roll():
    angle = np.deg2rad(35)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    frontal = np.array([[30, 40], [70, 40], [50, 60], [35, 80], [65, 80]], np.float32)
    np.testing.assert_allclose(nose_along_eyes((frontal @ rotation.T)[None]), [0.5], atol=1e-6)


def boxes(*sides: float) -> sv.Detections:
    xyxy = np.array([[10, 10, 10 + side, 10 + side] for side in sides], np.float32).reshape(-1, 4)
    return sv.Detections(xyxy=xyxy, confidence=np.ones(len(sides), np.float32))


def test_detection_sizer_shrinks_the_copy_only_while_every_face_is_large():
    sizer = DetectionSizer(largest_side=480, smallest_side=320, full_every_n=5)
    frame = np.zeros((480, 640, 3), np.uint8)
    assert sizer.side_for(frame) == 480  # nothing seen yet: full size
    sizer.update(boxes(200))
    assert sizer.side_for(frame) == 320  # 80 px wanted of a 200-px face: 256 px, not below 320
    sizer.update(boxes(200, 120))
    assert sizer.side_for(frame) == 427  # 640 * 80 / 120, rounded up  # the smallest face decides
    sizer.update(boxes(50))
    assert sizer.side_for(frame) == 480  # a small face: full size
    sizer.update(boxes())
    assert sizer.side_for(frame) == 480  # no face: full size, to find any


def test_detection_sizer_runs_full_size_every_nth_frame():
    sizer = DetectionSizer(largest_side=480, smallest_side=320, full_every_n=3)
    frame = np.zeros((480, 640, 3), np.uint8)
    sides = []
    for _ in range(7):
        sides.append(sizer.side_for(frame))
        sizer.update(boxes(300))
    assert sides == [480, 320, 320, 480, 320, 320, 480]
    always_full = DetectionSizer(largest_side=480, smallest_side=320, full_every_n=1)
    always_full.update(boxes(300))
    assert always_full.side_for(frame) == 480


@pytest.mark.parametrize("video", ["single_face.mp4", "head-pose-face-detection-female-and-male.mp4"])
def test_a_sized_stream_finds_the_faces_a_full_size_one_finds(detectors, shared_dir, video):
    sizer = DetectionSizer(largest_side=480, smallest_side=320, full_every_n=5)
    capture = cv2.VideoCapture(str(shared_dir / "media" / "videos" / video))
    smaller_copies = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        side = sizer.side_for(frame)
        sized, full = detectors["yunet"].detect(frame, side), detectors["yunet"].detect(frame)
        sizer.update(sized)
        smaller_copies += side < min(480, max(frame.shape[:2]))
        assert len(sized) == len(full)
        if len(full):
            ious = sv.box_iou_batch(np.sort(sized.xyxy, axis=0), np.sort(full.xyxy, axis=0)).diagonal()
            assert ious.min() > 0.8
    # The single face is large enough to be found on smaller copies; the two-person video's faces are not.
    assert (smaller_copies > 0) == (video == "single_face.mp4")
