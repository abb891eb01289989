"""BlazeFace (a configured detector, and the fallback) on real photos and clips, the network alone on the whole
picture: faces where there are faces, none where there are none, boxes where YuNet puts them; odd inputs, the
cached ONNX translation, the TFLite translator's padding."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import supervision as sv

from emotion_detector import tflite_onnx
from emotion_detector.detection import DetectorOptions, FaceSearch
from emotion_detector.detection.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector, weighted_nms
from emotion_detector.detection.yunet import YuNetDetector
from tests.conftest import YUNET


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(scope="module")
def detectors(cache_dir) -> dict:
    options = DetectorOptions(cache_dir=cache_dir)  # the product defaults: BlazeFace's score >= 0.7
    return {
        "blazeface": BlazeFaceDetector(options, SHORT_RANGE),
        "blazeface_full_range": BlazeFaceDetector(options, FULL_RANGE),
        "yunet": YuNetDetector(YUNET, options),
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


@pytest.mark.parametrize("variant", ["blazeface", "blazeface_full_range"])
@pytest.mark.parametrize(
    ("name", "faces"),
    [
        ("single_face.jpg", 1),
        ("obama.jpg", 1),
        ("biden.jpg", 1),
        ("astronaut.png", 1),
        ("obama_small.jpg", 1),
        ("two_people.jpg", 2),
        ("BWPictureHuman.jpg", 0),
    ],
)
def test_faces_found_where_there_are_faces(detectors, shared_dir, variant, name, faces):
    picture = image(shared_dir, name)
    found = detectors[variant].detect(picture)
    assert len(found) == faces
    height, width = picture.shape[:2]
    assert ((found.xyxy >= 0) & (found.xyxy <= [width, height, width, height])).all()
    assert ((found.confidence >= 0.7) & (found.confidence <= 1)).all()


def test_full_range_finds_all_five_of_a_group(detectors, shared_dir):
    # The five faces are a tenth of the photo's width: below the short-range model's reach on the whole picture...
    assert len(detectors["blazeface_full_range"].detect(image(shared_dir, "multi_face.jpg"))) == 5
    # ...which a search in tiles at the scale its range asks for brings back.
    assert len(FaceSearch(detectors["blazeface"]).find(image(shared_dir, "multi_face.jpg"))) == 5


@pytest.mark.parametrize("variant", ["blazeface", "blazeface_full_range"])
@pytest.mark.parametrize("video", ["no_face.mp4", "people-detection.mp4"])
def test_no_face_in_clips_without_faces(detectors, shared_dir, variant, video):
    assert sum(len(detectors[variant].detect(frame)) for frame in frames(shared_dir, video, every=4)) == 0


@pytest.mark.parametrize("variant", ["blazeface", "blazeface_full_range"])
@pytest.mark.parametrize("name", ["single_face.jpg", "obama.jpg", "biden.jpg", "two_people.jpg", "astronaut.png", "obama_small.jpg"])
def test_boxes_and_landmarks_agree_with_yunet(detectors, shared_dir, variant, name):
    picture = image(shared_dir, name)
    # YuNet on a copy of at most 480 px, where its landmarks were measured against BlazeFace's (a 1000-px photo's
    # 150-px faces give it landmarks a few pixels off).
    scale = min(1.0, 480 / max(picture.shape[:2]))
    yunet = detectors["yunet"].detect(cv2.resize(picture, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA))
    yunet.xyxy, yunet.data["landmarks"] = yunet.xyxy / scale, yunet.data["landmarks"] / scale
    ours = detectors[variant].detect(picture)
    assert len(ours) == len(yunet) > 0
    iou = sv.box_iou_batch(ours.xyxy, yunet.xyxy)
    match = iou.argmax(axis=1)
    # The same face: BlazeFace's square box starts at the eyebrows, YuNet's at the hairline (IoU 0.68-0.77 measured).
    assert iou.max(axis=1).min() >= 0.6
    assert sorted(match.tolist()) == list(range(len(yunet)))
    # Eyes and nose tip within 15 % of the face's width of YuNet's (measured: at most 13 %); mouth corners NaN.
    widths = yunet.xyxy[match, 2] - yunet.xyxy[match, 0]
    error = np.abs(ours.data["landmarks"][:, :3] - yunet.data["landmarks"][match, :3]).max(axis=(1, 2))
    assert (error / widths < 0.15).all()
    assert np.isnan(ours.data["landmarks"][:, 3:]).all()
    assert ours.data["keypoints"].shape == (len(ours), 6, 2)


@pytest.mark.parametrize("variant", [SHORT_RANGE, FULL_RANGE], ids=lambda v: v.name)
def test_the_wheels_model_matches_the_reference_copy(detectors, shared_dir, cache_dir, variant):
    """../shared/models/blazeface holds MediaPipe's files from another source: the same faces, the same boxes."""
    copy = shared_dir / "models" / "blazeface" / variant.filename
    reference = BlazeFaceDetector(DetectorOptions(cache_dir=cache_dir), variant, model_path=copy)
    for name in ("single_face.jpg", "two_people.jpg", "BWPictureHuman.jpg"):
        ours, theirs = detectors[variant.name].detect(image(shared_dir, name)), reference.detect(image(shared_dir, name))
        assert len(ours) == len(theirs)
        np.testing.assert_allclose(np.sort(ours.xyxy, axis=0), np.sort(theirs.xyxy, axis=0), atol=0.5)


@pytest.mark.parametrize("video", ["single_face.mp4", "head-pose-face-detection-female-and-male.mp4"])
def test_every_frame_of_the_webcam_and_two_person_clips(detectors, shared_dir, video):
    expected = 1 if video == "single_face.mp4" else 2
    counts = [len(detectors["blazeface"].detect(frame)) for frame in frames(shared_dir, video)]
    assert counts == [expected] * len(counts)


ODD_SHAPES = [(10, 10_000, 3), (10_000, 10, 3), (1, 1, 3), (1, 1), (0, 5, 3), (360, 640), (360, 640, 1), (360, 640, 4)]


@pytest.mark.parametrize("shape", ODD_SHAPES)
def test_any_image_shape(detectors, shape):
    found = detectors["blazeface"].detect(np.full(shape, 128, np.uint8))
    assert len(found) == 0
    assert found.data["landmarks"].shape == (0, 5, 2) and found.data["keypoints"].shape == (0, 6, 2)


def test_grey_and_bgra_find_the_same_face(detectors, shared_dir):
    picture = image(shared_dir, "obama.jpg")
    colour = detectors["blazeface"].detect(picture)
    for other in (cv2.cvtColor(picture, cv2.COLOR_BGR2GRAY), cv2.cvtColor(picture, cv2.COLOR_BGR2BGRA)):
        found = detectors["blazeface"].detect(other)
        assert len(found) == 1 and sv.box_iou_batch(found.xyxy, colour.xyxy)[0, 0] > 0.8  # grey: 0.85


def test_threads_share_one_detector(detectors, shared_dir):
    clip = frames(shared_dir, "head-pose-face-detection-female-and-male.mp4", every=4)
    alone = [detectors["blazeface"].detect(frame).xyxy for frame in clip]
    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(lambda frame: detectors["blazeface"].detect(frame).xyxy, clip))
    for a, b in zip(alone, together, strict=True):
        np.testing.assert_array_equal(a, b)


def test_the_translation_is_cached_and_reused(tmp_path, monkeypatch):
    first = BlazeFaceDetector(DetectorOptions(cache_dir=tmp_path))
    assert isinstance(first.onnx_model, Path) and first.onnx_model.parent == tmp_path
    written = first.onnx_model.stat().st_mtime_ns
    monkeypatch.setattr(tflite_onnx, "convert", lambda *_a, **_k: pytest.fail("converted again instead of using the cache"))
    second = BlazeFaceDetector(DetectorOptions(cache_dir=tmp_path))
    assert second.onnx_model == first.onnx_model and first.onnx_model.stat().st_mtime_ns == written
    assert [p.name for p in tmp_path.iterdir()] == [first.onnx_model.name]  # no temporary files left behind


def test_an_unwritable_cache_still_works(tmp_path, caplog):
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with caplog.at_level(logging.WARNING):
        detector = BlazeFaceDetector(DetectorOptions(cache_dir=blocker / "cache"))
    assert isinstance(detector.onnx_model, bytes) and "cannot cache" in caplog.text
    assert len(detector.detect(np.zeros((360, 640, 3), np.uint8))) == 0


def test_weighted_nms_averages_overlapping_boxes_by_score():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.6, 0.8], np.float32)
    points = boxes[:, None, :2].repeat(6, axis=1)
    kept_boxes, kept_scores, kept_points = weighted_nms(boxes, scores, points, 0.3)
    np.testing.assert_allclose(kept_scores, [0.9, 0.8])
    np.testing.assert_allclose(kept_boxes[0], [0.4, 0.4, 10.4, 10.4], atol=1e-5)  # 0.6 / 1.5 of the way to the second
    np.testing.assert_allclose(kept_points[1], [[50, 50]] * 6)


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "pads"),
    [
        (128, 5, 2, [1, 1, 2, 2]),  # TensorFlow's SAME: the odd pixel at the end
        (64, 3, 1, [1, 1, 1, 1]),
        (64, 2, 2, [0, 0, 0, 0]),  # max pooling 2x2 / 2
        (7, 3, 2, [1, 1, 1, 1]),
    ],
)
def test_same_padding_as_tensorflow(size, kernel, stride, pads):
    assert tflite_onnx._same_padding([size, size], [kernel, kernel], [stride, stride]) == pads
