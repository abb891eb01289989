"""Both detectors on real photos: faces where there are faces, none where there are none."""

from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions, HaarDetector, YuNetDetector, create_detector, nose_along_eyes


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


def test_auto_falls_back_to_haar_without_the_yunet_file(tmp_path, shared_dir):
    assert create_detector(DetectorOptions(kind="auto", yunet_path=tmp_path / "missing.onnx")).name == "haar"
    assert create_detector(DetectorOptions(kind="auto", yunet_path=shared_dir / "models/yunet/face_detection_yunet.onnx")).name == "yunet"
    with pytest.raises(FileNotFoundError, match="models download"):
        create_detector(DetectorOptions(kind="yunet", yunet_path=tmp_path / "missing.onnx"))


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
