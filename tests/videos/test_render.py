"""The annotated video is drawn in parts (one per segment) and joined without re-encoding: each part must
draw exactly what a single pass would, and the joined file must play as one video."""

from __future__ import annotations

import itertools

import av
import cv2
import numpy as np
import pytest

from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.labels import EMOTIONS
from emotion_detector.videos.analysis import decode_frames
from emotion_detector.videos.render import OverlayTimeline, blur_face, join_parts, render_part
from emotion_detector.videos.summary import PersonFrame

FPS = 30.0


def observation(frame: int, x: float, top: int) -> PersonFrame:
    emotion = tuple(0.7 if i == top else 0.05 for i in range(len(EMOTIONS)))
    return PersonFrame(frame, (x, 60.0, x + 120, 200.0), emotion, 31.0, 0.3, 0.9)


@pytest.fixture
def people() -> dict[int, list[PersonFrame]]:
    """Two people over 72 frames: one seen on most frames with gaps, one every third frame, expressions changing."""
    rng = np.random.default_rng(7)
    first = [observation(f, 200 + f, top=f // 10 % 7) for f in range(72) if rng.random() < 0.8]
    second = [observation(f, 40.0, top=(f // 7) % 7) for f in range(0, 72, 3)]
    return {1: first, 2: second}


def labels_drawn(timeline: OverlayTimeline, frames: range) -> list[list[tuple]]:
    return [
        [(label.person, label.observation.frame_index, label.probabilities.round(12).tolist()) for label in timeline.labels_at(f)]
        for f in frames
    ]


@pytest.mark.parametrize("hold_frames", [1, 3])
def test_a_part_drawn_from_its_surroundings_alone_matches_the_whole(people, hold_frames):
    whole = OverlayTimeline(people, hold_frames)
    start, stop = 30, 50
    earliest = start - OverlayTimeline.lookback_frames(hold_frames)
    nearby = {p: [f for f in frames if earliest <= f.frame_index < stop] for p, frames in people.items()}
    assert labels_drawn(OverlayTimeline(nearby, hold_frames), range(start, stop)) == labels_drawn(whole, range(start, stop))
    assert any(len(labels) == 2 for labels in labels_drawn(whole, range(start, stop)))  # both people are drawn there


def test_a_label_is_the_latest_observation_as_stored_and_disappears_after_the_hold(people):
    """No second smoothing here: observations come smoothed from the FramePipeline, so the video draws what
    the timeline and the statistics show for that frame."""
    frames = [observation(0, 10, top=3), observation(1, 10, top=3), observation(2, 10, top=5)]
    timeline = OverlayTimeline({1: frames}, hold_frames=2)
    (label,) = timeline.labels_at(2)
    assert label.probabilities.tolist() == list(frames[2].emotion)
    assert [timeline.labels_at(f)[0].observation.frame_index for f in range(5)] == [0, 1, 2, 2, 2]  # held over skipped frames
    assert [len(timeline.labels_at(f)) for f in range(6)] == [1, 1, 1, 1, 1, 0]


def test_a_label_is_not_held_up_across_a_shot_cut(people):
    frames = [observation(0, 10, top=3), observation(1, 10, top=3)]
    assert [len(OverlayTimeline({1: frames}, hold_frames=2).labels_at(f)) for f in range(5)] == [1, 1, 1, 1, 0]
    # A cut at frame 2: the face of frame 1 is gone with its shot.
    assert [len(OverlayTimeline({1: frames}, hold_frames=2, shot_cuts=[2]).labels_at(f)) for f in range(5)] == [1, 1, 0, 0, 0]


def test_a_label_below_the_models_threshold_is_drawn_as_uncertain():
    frames = [observation(0, 10, top=3), PersonFrame(1, (10.0, 60.0, 130.0, 200.0), (0.1, 0.1, 0.1, 0.45, 0.05, 0.1, 0.1), 31.0, 0.3, 0.9)]
    assert not OverlayTimeline({1: frames}, hold_frames=2, uncertain_below=0.5).labels_at(0)[0].uncertain  # 0.7 on top
    assert OverlayTimeline({1: frames}, hold_frames=2, uncertain_below=0.5).labels_at(1)[0].uncertain  # 0.45 on top
    assert not OverlayTimeline({1: frames}, hold_frames=2).labels_at(1)[0].uncertain  # a model without a threshold


def test_people_far_apart_in_time_are_each_drawn_only_around_their_own_frames():
    timeline = OverlayTimeline(
        {1: [observation(f, 10, top=0) for f in range(0, 10)], 2: [observation(f, 300, top=1) for f in range(600, 610)]}, hold_frames=2
    )
    on_screen = {f: [label.person for label in timeline.labels_at(f)] for f in (5, 11, 12, 300, 605, 611, 612)}
    assert on_screen == {5: [1], 11: [1], 12: [], 300: [], 605: [2], 611: [2], 612: []}


def decoded(path) -> tuple[list[np.ndarray], list[int], list[bool], float]:
    """Grey frames, timestamps, keyframe flags and the stream's duration in seconds."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        duration_s = float(stream.duration * stream.time_base)
        return [f.to_ndarray(format="gray") for f in frames], [f.pts for f in frames], [f.key_frame for f in frames], duration_s


def test_parts_joined_play_as_one_video_with_every_frame_in_place(shared_dir, tmp_path, people):
    source = shared_dir / "media" / "videos" / "single_face.mp4"
    frame_count = sum(1 for _ in decode_frames(source, 0, 10_000))
    timeline = OverlayTimeline(people, hold_frames=1)
    bounds = [0, 25, 50, frame_count]
    parts = []
    for start, stop in itertools.pairwise(bounds):
        render_part(source, tmp_path / f"{start}.mp4", timeline, FPS, range(start, stop))
        parts.append((tmp_path / f"{start}.mp4", start))
    join_parts(parts, tmp_path / "joined.mp4", FPS)
    render_part(source, tmp_path / "single.mp4", timeline, FPS, range(0, frame_count))

    joined, pts, keys, duration_s = decoded(tmp_path / "joined.mp4")
    single, single_pts, _, _ = decoded(tmp_path / "single.mp4")
    assert len(joined) == frame_count == 72
    assert pts == single_pts and pts == sorted(set(pts))  # same timing as one pass, strictly increasing
    assert [i for i, key in enumerate(keys) if key] == [0, 25, 50]  # each part starts with a keyframe
    assert duration_s == pytest.approx(frame_count / FPS, abs=1 / FPS)
    for ours, reference in zip(joined, single, strict=True):
        mse = np.mean((ours.astype(float) - reference.astype(float)) ** 2)
        assert 10 * np.log10(255**2 / max(mse, 1e-9)) > 35  # the same picture, up to compression
    boxes = top_level_boxes(tmp_path / "joined.mp4")
    assert boxes.index(b"moov") < boxes.index(b"mdat")  # the index comes first: it plays while it downloads


def top_level_boxes(path) -> list[bytes]:
    data, boxes, offset = path.read_bytes(), [], 0
    while offset < len(data):
        size, kind = int.from_bytes(data[offset : offset + 4], "big"), data[offset + 4 : offset + 8]
        size = int.from_bytes(data[offset + 8 : offset + 16], "big") if size == 1 else size
        boxes.append(kind)
        offset += size
    return boxes


def test_a_part_of_another_size_is_refused(shared_dir, tmp_path, people):
    source = shared_dir / "media" / "videos" / "single_face.mp4"
    timeline = OverlayTimeline(people, hold_frames=1)
    render_part(source, tmp_path / "a.mp4", timeline, FPS, range(0, 10))
    other = tmp_path / "other.mp4"
    with av.open(str(other), mode="w", format="mp4") as output:
        stream = output.add_stream("libx264", rate=30, options={"preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = 320, 180, "yuv420p"
        for _ in range(5):
            output.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((180, 320, 3), np.uint8), format="bgr24")))
        output.mux(stream.encode(None))
    with pytest.raises(ValueError, match="other settings"):
        join_parts([(tmp_path / "a.mp4", 0), (other, 10)], tmp_path / "joined.mp4", FPS)


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.CV_64F).var())


def test_blurred_faces_are_pixelated_in_the_annotated_video_and_the_rest_is_not(shared_dir, tmp_path):
    source = shared_dir / "media" / "videos" / "single_face.mp4"
    first = next(decode_frames(source, 0, 1))[1]
    found = create_detector(DetectorOptions()).detect(first)  # the real face of the clip's first frame
    box = tuple(float(v) for v in found.xyxy[0])
    x1, y1, x2, y2 = (round(v) for v in box)
    people = {1: [PersonFrame(0, box, (0.05, 0.05, 0.05, 0.7, 0.05, 0.05, 0.05), 31.0, 0.3, 0.9)]}
    timeline = OverlayTimeline(people, hold_frames=1)
    drawn = {}
    for blur in (False, True):
        render_part(source, tmp_path / f"{blur}.mp4", timeline, FPS, range(0, 1), blur_faces=blur)
        drawn[blur] = next(decode_frames(tmp_path / f"{blur}.mp4", 0, 1))[1]
    inside = (slice(y1 + 4, y2 - 4), slice(x1 + 4, x2 - 4))  # within the drawn box's edges
    assert sharpness(drawn[True][inside]) < sharpness(drawn[False][inside]) / 10
    # Far from the face (below the box and its margin), the frame is the same (up to H.264).
    below = (slice(min(first.shape[0] - 1, y2 + (y2 - y1) // 2), None), slice(None))
    assert np.abs(drawn[True][below].astype(int) - drawn[False][below].astype(int)).mean() < 2


def test_blurring_a_box_at_the_frame_edge_stays_inside_the_frame():
    image = np.random.default_rng(1).integers(0, 255, (120, 160, 3), dtype=np.uint8)
    original = image.copy()
    blur_face(image, (-20.0, -10.0, 40.0, 50.0))
    assert not np.array_equal(image[:50, :40], original[:50, :40])
    np.testing.assert_array_equal(image[70:, 60:], original[70:, 60:])
    blur_face(image, (150.0, 110.0, 151.0, 111.0))  # a sliver: nothing to pixelate, no error
