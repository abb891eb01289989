"""SegmentAnalyzer on a real video and the shipped models (in process): expression on every frame, age and gender
measured every n-th frame of a track and carried over in between."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from emotion_detector.detection import DetectionSizer, DetectorOptions, create_detector
from emotion_detector.settings import Settings
from emotion_detector.videos.analysis import Cancelled, SegmentAnalyzer, decode_frames


def analyse(models, shared_dir, age_gender_every_n: int):
    detector = create_detector(DetectorOptions.from_settings(Settings()))
    analyzer = SegmentAnalyzer(detector, models, fps=30.0, age_gender_every_n=age_gender_every_n)
    return analyzer.run(shared_dir / "media" / "videos" / "single_face.mp4", 0, 40)


def test_age_and_gender_are_measured_every_nth_frame_of_a_track_and_held_between(inprocess_models, shared_dir):
    every_frame = analyse(inprocess_models, shared_dir, 1)
    sampled = analyse(inprocess_models, shared_dir, 5)
    assert [o.frame_index for o in sampled] == [o.frame_index for o in every_frame] == list(range(40))  # one face per frame
    # Expression is measured on every frame either way: the same numbers.
    np.testing.assert_allclose([o.emotion for o in sampled], [o.emotion for o in every_frame], atol=1e-4)
    tracked = [(a, b) for a, b in zip(sampled, every_frame, strict=True) if a.local_track >= 0]
    track_starts = next(i for i, o in enumerate(sampled) if o.local_track >= 0)
    for position, (held, measured) in enumerate(tracked):
        source = tracked[position - position % 5][1]  # the frame whose measurement this one holds
        assert held.age_years == source.age_years and held.female_probability == source.female_probability
        if position % 5 == 0:
            assert held.age_years == measured.age_years
    # The model really varies from frame to frame, so holding a value is visible (the test can fail).
    assert len({o.age_years for o in every_frame[track_starts:]}) > len({o.age_years for o in sampled[track_starts:]})


def test_detecting_ahead_on_a_thread_finds_the_faces_one_frame_at_a_time_would(inprocess_models, shared_dir):
    """Detection runs a few frames ahead of tracking; the sizer must still size each frame from the faces
    of the frame before it, so the boxes equal those of a plain loop over the frames."""
    video = shared_dir / "media" / "videos" / "single_face.mp4"  # a large face: the sizer shrinks and grows the copy
    settings = Settings()
    detector = create_detector(DetectorOptions.from_settings(settings))
    sizer = DetectionSizer.from_settings(settings)
    expected, sides = [], set()
    for index, image in decode_frames(video, 0, 60):
        side = sizer.side_for(image)
        sides.add(side)
        detections = detector.detect(image, side)
        sizer.update(detections)
        expected += [(index, tuple(round(float(v), 2) for v in box)) for box in detections.xyxy]
    analyzer = SegmentAnalyzer(detector, inprocess_models, fps=30.0, new_sizer=lambda: DetectionSizer.from_settings(settings))
    found = analyzer.run(video, 0, 60)
    assert len({index for index, _ in expected}) > 50  # faces in most frames: the comparison means something
    assert len(sides) > 1  # sized from the frame before: sizing a frame too early would change its boxes
    assert [(o.frame_index, o.box_xyxy) for o in found] == expected


def test_a_cancelled_segment_stops_its_detection_thread(inprocess_models, shared_dir):
    detector = create_detector(DetectorOptions.from_settings(Settings()))
    calls = []

    def cancel(frames_done: int) -> bool:
        calls.append(frames_done)
        return False

    analyzer = SegmentAnalyzer(detector, inprocess_models, fps=30.0)
    with pytest.raises(Cancelled):
        analyzer.run(shared_dir / "media" / "videos" / "single_face.mp4", 0, 60, on_progress=cancel)
    assert calls == [8]  # stopped at the first progress report
    assert not [t for t in threading.enumerate() if t.name.startswith("detect")]


def test_closing_the_detection_look_ahead_early_stops_its_thread(shared_dir):
    """SegmentAnalyzer.run closes the look-ahead explicitly when it stops early (cancel, error): closing
    must cancel the frames queued ahead and end the thread, not leave it to the garbage collector."""
    detector = create_detector(DetectorOptions.from_settings(Settings()))
    analyzer = SegmentAnalyzer(detector, client=None, fps=30.0)
    frames = analyzer._detected_frames(shared_dir / "media" / "videos" / "single_face.mp4", 0, 60)
    taken = [next(frames)[0] for _ in range(3)]
    assert taken == [0, 1, 2] and [t for t in threading.enumerate() if t.name.startswith("detect")]
    frames.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("detect")]
