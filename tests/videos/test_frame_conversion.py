"""OpenCV's colour conversion stands in for PyAV's (swscale) on the hot path; it must give the same pixels."""

from __future__ import annotations

import av
import numpy as np

from emotion_detector.videos.analysis import frame_to_bgr
from emotion_detector.videos.render import bgr_to_frame


def first_frame(shared_dir) -> av.VideoFrame:
    with av.open(str(shared_dir / "media" / "videos" / "single_face.mp4")) as container:
        return next(container.decode(video=0))


def test_decoded_frames_match_pyav_conversion(shared_dir):
    frame = first_frame(shared_dir)
    assert frame.format.name == "yuv420p"  # the fast path is the one under test
    ours, pyav = frame_to_bgr(frame).astype(int), frame.to_ndarray(format="bgr24").astype(int)
    assert ours.shape == pyav.shape == (360, 640, 3)
    difference = np.abs(ours - pyav)
    assert difference.max() <= 4 and difference.mean() < 1.5  # rounding, not a different colour matrix


def test_frames_tagged_bt709_are_left_to_pyav(shared_dir):
    frame = first_frame(shared_dir)
    frame.colorspace = 1  # BT.709: OpenCV's conversion is BT.601 only
    np.testing.assert_array_equal(frame_to_bgr(frame), frame.to_ndarray(format="bgr24"))


def test_encoder_input_round_trips(shared_dir):
    image = frame_to_bgr(first_frame(shared_dir))
    frame = bgr_to_frame(image)
    assert frame.format.name == "yuv420p" and (frame.width, frame.height) == (640, 360)
    difference = np.abs(frame_to_bgr(frame).astype(int) - image.astype(int))
    assert difference.mean() < 2.0  # 4:2:0 chroma subsampling loses a little colour detail, nothing more
