"""Part claims keep the background threads of several workers, and finalise, from drawing the same part of the
annotated video at once. A claim left by a dead worker, or held by a thread too slow to be worth waiting for,
must not hold finalise up; a holder whose claim was taken over stops and writes nothing."""

from __future__ import annotations

import os
import threading
import time

import pytest

from emotion_detector.videos.parts import ClaimLost, PartClaim, draw_claimed_part, draw_missing_parts, part_path
from emotion_detector.videos.render import OverlayTimeline
from tests.conftest import SHARED

SOURCE = SHARED / "media" / "videos" / "single_face.mp4"
NOBODY = OverlayTimeline({}, 1)


def age(claim: PartClaim, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(claim.path, (then, then))


def test_a_part_is_claimed_once_until_its_holder_drops_it(tmp_path):
    part = tmp_path / "00003.mp4"
    first, second = PartClaim(part), PartClaim(part)
    assert first.take(300)
    assert not second.take(300)
    assert first.holder().token == first.token and first.holder().frames_total == 300
    second.drop()  # not its claim: nothing happens
    assert first.holder() is not None
    first.drop()
    assert first.holder() is None
    assert second.take(300)


def test_a_stale_claim_is_taken_over_and_its_old_holder_stops_at_its_next_refresh(tmp_path):
    part = tmp_path / "00000.mp4"
    dead_worker = PartClaim(part, stale_after_s=5.0)
    assert dead_worker.take(300)
    dead_worker.refresh(40, 300)
    age(dead_worker, 6.0)
    successor = PartClaim(part, stale_after_s=5.0)
    assert successor.take(300)
    assert not PartClaim(part, stale_after_s=5.0).take(300)  # the successor's claim is fresh
    with pytest.raises(ClaimLost):
        dead_worker.refresh(50, 300)
    dead_worker.drop()
    assert successor.holder().token == successor.token


def test_claiming_in_a_removed_parts_folder_says_so(tmp_path):
    with pytest.raises(FileNotFoundError):
        PartClaim(tmp_path / "cancelled-job" / "00000.mp4").take(300)


def test_drawing_a_claimed_part_writes_it_whole_and_lets_the_claim_go(tmp_path):
    part = tmp_path / "00000.mp4"
    claim = PartClaim(part)
    assert claim.take(30)
    frames_drawn = []
    assert draw_claimed_part(SOURCE, part, NOBODY, 30.0, range(0, 30), claim, on_frame=frames_drawn.append, refresh_every_s=0)
    assert part.stat().st_size > 0 and frames_drawn == list(range(30))
    assert [p.name for p in tmp_path.iterdir()] == ["00000.mp4"]  # no claim or scratch file left


def test_a_part_drawn_by_someone_else_meanwhile_is_not_drawn_again(tmp_path):
    part = tmp_path / "00000.mp4"
    part.write_bytes(b"drawn by another worker")
    claim = PartClaim(part)
    assert claim.take(30)
    assert not draw_claimed_part(SOURCE, part, NOBODY, 30.0, range(0, 30), claim)
    assert part.read_bytes() == b"drawn by another worker" and not claim.path.exists()


def test_a_holder_whose_claim_is_taken_over_stops_and_writes_nothing(tmp_path):
    part = tmp_path / "00000.mp4"
    slow = PartClaim(part)
    assert slow.take(30)

    def taken_over_at_frame_5(frame_index: int) -> None:
        if frame_index == 5:
            PartClaim(part).take_over(30)

    assert not draw_claimed_part(SOURCE, part, NOBODY, 30.0, range(0, 30), slow, on_frame=taken_over_at_frame_5, refresh_every_s=0)
    assert not part.exists() and [p.name for p in tmp_path.iterdir()] == ["00000.mp4.claim"]  # the new holder's


class Holder(threading.Thread):
    """Another worker's thread drawing a part: claims it, reports progress at ``frames_per_s``, then writes it."""

    def __init__(self, part, frames_total: int, frames_per_s: float):
        super().__init__(daemon=True)
        self.claim, self.frames_total, self.frames_per_s = PartClaim(part), frames_total, frames_per_s
        self.lost = False
        assert self.claim.take(frames_total)

    def run(self) -> None:
        try:
            for done in range(0, self.frames_total + 1, 5):
                self.claim.refresh(done, self.frames_total)
                time.sleep(5 / self.frames_per_s)
            part = self.claim.path.with_name(self.claim.path.name.removesuffix(".claim"))
            part.write_bytes(b"drawn by the holder")
            self.claim.drop()
        except ClaimLost:
            self.lost = True


def finalise_parts(folder, parts: list[tuple[int, range]], **kwargs) -> int:
    return draw_missing_parts(SOURCE, folder, NOBODY, 30.0, parts, heartbeat=lambda: None, **kwargs)


def test_finalise_draws_free_parts_and_waits_for_one_a_brisk_holder_is_drawing(tmp_path):
    holder = Holder(part_path(tmp_path, 1), frames_total=30, frames_per_s=100)  # done in 0.35 s
    holder.start()
    assert finalise_parts(tmp_path, [(0, range(0, 30)), (1, range(30, 60))], own_frames_per_s_guess=5) == 1
    holder.join()
    assert part_path(tmp_path, 1).read_bytes() == b"drawn by the holder" and not holder.lost
    assert part_path(tmp_path, 0).stat().st_size > 0


def test_finalise_takes_over_from_a_holder_too_slow_to_wait_for(tmp_path):
    holder = Holder(part_path(tmp_path, 0), frames_total=30, frames_per_s=3)  # would need 10 s
    holder.start()
    started = time.monotonic()
    assert finalise_parts(tmp_path, [(0, range(0, 30))]) == 1
    assert time.monotonic() - started < 5
    holder.join(timeout=5)
    assert holder.lost and part_path(tmp_path, 0).read_bytes() != b"drawn by the holder"


def test_finalise_takes_over_a_dead_workers_claim(tmp_path):
    dead = PartClaim(part_path(tmp_path, 0), stale_after_s=10.0)
    assert dead.take(30)
    age(dead, 11.0)
    started = time.monotonic()
    assert finalise_parts(tmp_path, [(0, range(0, 30))]) == 1
    assert time.monotonic() - started < 5 and part_path(tmp_path, 0).stat().st_size > 0


def test_finalise_waits_no_longer_than_its_limit(tmp_path):
    holder = Holder(part_path(tmp_path, 0), frames_total=30, frames_per_s=20)  # brisk enough, but past the limit
    holder.start()
    started = time.monotonic()
    assert finalise_parts(tmp_path, [(0, range(0, 30))], give_up_after_s=0.3, own_frames_per_s_guess=1) == 1
    assert time.monotonic() - started < 1.4
    holder.join(timeout=5)
    assert holder.lost
