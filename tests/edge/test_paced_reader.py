"""A video file played at its own frame rate (read_paced, edge mode): every frame at its time for a consumer that
keeps up, the newest due frame for one that is behind. A fake clock, a real video."""

import itertools
from pathlib import Path

import pytest

from emotion_detector.sources import Source, SourceKind, read_paced

FPS = 30  # single_face.mp4: 72 frames, 30 fps


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 100.0
        self.slept_s = 0.0

    def __call__(self) -> float:
        return self.now_s

    def sleep(self, seconds: float) -> None:
        self.now_s += seconds
        self.slept_s += seconds


@pytest.fixture
def single_face(shared_dir: Path) -> Source:
    return Source(SourceKind.VIDEO, str(shared_dir / "media" / "videos" / "single_face.mp4"))


def test_a_consumer_that_keeps_up_gets_every_frame_at_its_time(single_face: Source):
    clock = FakeClock()
    started_s = clock.now_s
    for frame in read_paced(single_face, clock, clock.sleep):
        assert clock.now_s - started_s == pytest.approx(frame.timestamp_ms / 1000, abs=0.002)
        assert frame.image_bgr.shape == (360, 640, 3)
    assert frame.index == 71
    assert clock.slept_s == pytest.approx(71 / FPS, abs=0.01)


def test_a_slow_consumer_gets_the_newest_due_frame_and_the_others_are_dropped(single_face: Source):
    clock = FakeClock()
    indexes = []
    for frame in read_paced(single_face, clock, clock.sleep):
        indexes.append(frame.index)
        clock.now_s += 0.2  # analysing a frame takes 6 frame times
    gaps = {b - a for a, b in itertools.pairwise(indexes)}
    # 0.2 s is 6 frame times; the frames' times are whole 0.1 ms, so a few land a hair past the clock.
    assert indexes[0] == 0 and gaps <= {5, 6} and indexes[-1] >= 66, indexes
    assert clock.slept_s == 0
