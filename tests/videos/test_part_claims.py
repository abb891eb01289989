"""Part claims keep the background threads of several workers, and finalise, from drawing the same part of the
annotated video at once; a claim left by a dead worker must stop counting, or its part would wait forever."""

from __future__ import annotations

import os
import time

import pytest

from emotion_detector.videos.parts import PartClaim, draw_claimed_part
from emotion_detector.videos.render import OverlayTimeline
from tests.conftest import SHARED

SOURCE = SHARED / "media" / "videos" / "single_face.mp4"


def test_a_part_is_claimed_once_until_its_claim_is_dropped(tmp_path):
    part = tmp_path / "00003.mp4"
    first, second = PartClaim(part), PartClaim(part)
    assert first.take()
    assert not second.take()
    assert second.is_held()
    first.drop()
    assert not second.is_held()
    assert second.take()


def test_a_stale_claim_is_taken_over_and_a_refreshed_one_is_not(tmp_path):
    part = tmp_path / "00000.mp4"
    dead_worker = PartClaim(part, stale_after_s=5.0)
    assert dead_worker.take()
    old = time.time() - 6.0
    os.utime(dead_worker.path, (old, old))
    assert PartClaim(part, stale_after_s=5.0).take()  # taken over, and refreshed by the new holder
    assert not PartClaim(part, stale_after_s=5.0).take()


def test_claiming_in_a_removed_parts_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError):
        PartClaim(tmp_path / "cancelled-job" / "00000.mp4").take()


def test_drawing_a_claimed_part_writes_it_whole_and_lets_the_claim_go(tmp_path):
    part = tmp_path / "00000.mp4"
    claim = PartClaim(part)
    assert claim.take()
    frames_drawn = []
    assert draw_claimed_part(SOURCE, part, OverlayTimeline({}, 1), 30.0, range(0, 30), claim, on_frame=frames_drawn.append)
    assert part.stat().st_size > 0 and frames_drawn == list(range(30))
    assert not claim.path.exists() and [p.name for p in tmp_path.iterdir()] == ["00000.mp4"]  # no scratch file left


def test_a_part_drawn_by_someone_else_meanwhile_is_not_drawn_again(tmp_path):
    part = tmp_path / "00000.mp4"
    part.write_bytes(b"drawn by another worker")
    claim = PartClaim(part)
    assert claim.take()
    assert not draw_claimed_part(SOURCE, part, OverlayTimeline({}, 1), 30.0, range(0, 30), claim)
    assert part.read_bytes() == b"drawn by another worker" and not claim.path.exists()
