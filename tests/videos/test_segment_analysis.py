"""A video segment through the video-mode FramePipeline, on a real video and the shipped models (in process): expression on
every frame, age and gender measured every n-th frame of a track and carried over in between, detection
ahead on a thread that stops when the segment stops."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions, FaceSearch, SearchOptions, VideoDetection, create_detector
from emotion_detector.pipeline import FaceAnalyzer, RunningMode
from emotion_detector.settings import Settings
from emotion_detector.videos.analysis import Cancelled, analyse_segment, decode_frames

SINGLE_FACE = "single_face.mp4"


@pytest.fixture(scope="module")
def client(inprocess_models):
    return inprocess_models


def analyzer(client, **settings) -> FaceAnalyzer:
    configured = Settings(**settings)
    return FaceAnalyzer(create_detector(DetectorOptions.from_settings(configured)), client, configured)


def faces(frames):
    return [face for frame in frames for face in frame.faces]


def test_age_and_gender_are_measured_every_nth_frame_of_a_track_and_carried_between(client, shared_dir):
    video = shared_dir / "media" / "videos" / SINGLE_FACE
    # No smoothing: what is carried over is visible as equal values.
    every_frame = analyse_segment(analyzer(client, age_gender_every_n_frames=1, smoothing_new_frame_weight=1.0), video, 30.0, 0, 40)
    sampled = analyse_segment(analyzer(client, age_gender_every_n_frames=5, smoothing_new_frame_weight=1.0), video, 30.0, 0, 40)
    assert [f.frame_index for f in sampled] == [f.frame_index for f in every_frame] == list(range(40))
    assert [len(f.faces) for f in sampled] == [1] * 40
    # Expression is measured on every frame either way: the same numbers.
    np.testing.assert_allclose(
        [f.emotion_probabilities for f in faces(sampled)], [f.emotion_probabilities for f in faces(every_frame)], atol=1e-4
    )
    held = faces(sampled)
    # The face is there from the first frame (ByteTrack confirms tracks at once on a stream's first frame), and
    # its track is measured on every 5th frame from there.
    for position in range(40):
        source = held[position // 5 * 5]
        assert held[position].age_years == source.age_years and held[position].female_probability == source.female_probability
    # The model really varies from frame to frame, so carrying a value over is visible (the test can fail).
    assert len({f.age_years for f in faces(every_frame)}) > len({f.age_years for f in held}) == 8


def test_detecting_ahead_on_a_thread_finds_the_faces_one_frame_at_a_time_would(client, shared_dir):
    """Detection runs a few frames ahead of tracking; each frame must still be looked at around the faces of the
    frame before it, so the boxes equal those of a plain loop over the frames."""
    video = shared_dir / "media" / "videos" / SINGLE_FACE
    settings = Settings()
    detector = create_detector(DetectorOptions.from_settings(settings))
    schedule = VideoDetection(FaceSearch(detector, SearchOptions.from_settings(settings)), search_every_frames=30)  # 1 s at 30 fps
    expected, searched = [], []
    for index, image in decode_frames(video, 0, 60):
        detections = schedule.detect(image)
        searched.append(schedule.searched)
        expected += [(index, tuple(round(float(v), 2) for v in box)) for box in detections.xyxy]
    found = analyse_segment(FaceAnalyzer(detector, client, settings), video, 30.0, 0, 60)
    assert len({index for index, _ in expected}) > 50  # faces in most frames: the comparison means something
    assert sum(searched) == 2 and searched[0] and searched[30]  # looked around the frame before's faces in between
    assert [(frame.frame_index, tuple(round(v, 2) for v in face.box_xyxy)) for frame in found for face in frame.faces] == expected


def test_a_cancelled_segment_stops_its_detection_thread(client, shared_dir):
    calls = []

    def cancel(frames_done: int) -> bool:
        calls.append(frames_done)
        return False

    with pytest.raises(Cancelled):
        analyse_segment(analyzer(client), shared_dir / "media" / "videos" / SINGLE_FACE, 30.0, 0, 60, on_progress=cancel)
    assert calls == [1]  # stopped at the first progress report
    assert not [t for t in threading.enumerate() if t.name.startswith("detect")]


def test_closing_the_pipeline_early_stops_its_detection_thread(client, shared_dir):
    """Closing the video-mode iterator (cancel, error) cancels the frames queued ahead and ends the thread,
    not leaving it to the garbage collector."""
    pipeline = analyzer(client).pipeline(RunningMode.VIDEO, nominal_fps=30.0)
    results = pipeline.run(decode_frames(shared_dir / "media" / "videos" / SINGLE_FACE, 0, 60))
    taken = [next(results).frame_index for _ in range(3)]
    assert taken == [0, 1, 2] and [t for t in threading.enumerate() if t.name.startswith("detect")]
    results.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("detect")]


def test_every_nth_frame_is_counted_from_the_start_of_the_video(client, shared_dir):
    found = analyse_segment(analyzer(client), shared_dir / "media" / "videos" / SINGLE_FACE, 30.0, 7, 40, every_n_frames=3)
    assert [frame.frame_index for frame in found] == list(range(9, 40, 3))  # neighbouring segments share their overlap frames
