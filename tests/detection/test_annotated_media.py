"""The default detector, searched as the product searches, on the hand-annotated real media of bench/data/faces.json
(group photos, a classroom and a corridor with faces of 14-25 px, head turns, faces entering and leaving, clips
without faces): recall by face size and no false faces, in image mode and in video mode (every frame of each
clip in order, as video jobs and the CLI run it). Tolerances sit a little under what bench/detectors.py measured."""

from __future__ import annotations

import numpy as np
import pytest

from bench.faces import BUCKETS, Tally, annotated, image_of, video_fps, video_frames
from emotion_detector.detection import DetectorOptions, FaceSearch, SearchOptions, VideoDetection, create_detector
from emotion_detector.settings import Settings

pytestmark = pytest.mark.slow  # minutes of CPU on two cores


@pytest.fixture(scope="module")
def search(tmp_path_factory) -> FaceSearch:
    settings = Settings(model_cache_dir=tmp_path_factory.mktemp("model-cache"))
    return FaceSearch(create_detector(DetectorOptions.from_settings(settings)), SearchOptions.from_settings(settings))


def bucket(low_px: int) -> int:
    return next(b for b, (low, _) in enumerate(BUCKETS) if low == low_px)


def test_image_mode_finds_every_face_from_16_px_and_no_false_one(search):
    tally = Tally()
    for item in annotated():
        tally.add(search.find(image_of(item)).xyxy, item.faces_xyxy, item.ignore_xyxy)
    assert tally.total[bucket(20)] >= 20 and tally.total[bucket(64)] >= 40  # the set really has small and large faces
    assert tally.recall_from(20) == 1.0
    assert tally.recall(bucket(0)) >= 0.8  # 14-19 px: the classroom's back row
    assert tally.false_faces == 0


def test_video_mode_follows_small_faces_between_searches(search):
    tally = Tally()
    for source in sorted({item.source for item in annotated() if item.is_video}):
        wanted = {item.frame: item for item in annotated() if item.source == source}
        video = VideoDetection(search, max(1, round(video_fps(source))))
        for index, frame in enumerate(video_frames(source)):
            found = video.detect(frame)
            if index in wanted:
                tally.add(found.xyxy, wanted[index].faces_xyxy, wanted[index].ignore_xyxy)
    assert tally.recall_from(20) >= 0.95
    assert tally.recall(bucket(0)) >= 0.8
    assert tally.false_faces == 0


def test_the_tolerances_cover_every_annotated_face(search):
    """Every hand-drawn box lies in its picture, and the sizes span the buckets the tests above read."""
    heights = np.concatenate([item.faces_xyxy[:, 3] - item.faces_xyxy[:, 1] for item in annotated()])
    assert heights.min() >= 12 and heights.max() > 300 and len(heights) >= 120
    for item in annotated():
        height, width = image_of(item).shape[:2]
        assert ((item.faces_xyxy >= 0) & (item.faces_xyxy <= [width, height, width, height])).all()
