"""Which look each frame of a stream gets: whole-picture searches on the first frame, on schedule and after cuts,
regions around the known faces in between; live searches in the background whose faces join on the next frame.
Pinned with the square-finding network of test_search.py, so every answer is known."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest

from emotion_detector.detection import BackgroundSearches, FaceSearch, LiveDetection, SearchOptions, VideoDetection
from tests.detection.test_search import SquareFinder, picture_with_squares

SMALL = [(100, 100, 130, 130)]  # below the largest level's range: found by a search or around a known face only
NEW_SMALL = [(400, 200, 430, 230)]


class CountingSearch(FaceSearch):
    """FaceSearch that counts its whole-picture searches."""

    def __init__(self) -> None:
        super().__init__(SquareFinder(), SearchOptions(min_face_px=20))
        self.searches = 0

    def find(self, image_bgr, profiles=False):
        self.searches += 1
        return super().find(image_bgr, profiles)


def frame(squares) -> np.ndarray:
    return picture_with_squares((640, 360), squares)


def boxes(found) -> list[list[float]]:
    return found.xyxy.round().tolist()


def test_video_searches_the_first_frame_then_every_nth_and_follows_faces_between():
    search = CountingSearch()
    video = VideoDetection(search, search_every_frames=3)
    searched = []
    for number in range(7):
        moved = [(x1 + 3 * number, y1, x2 + 3 * number, y2) for x1, y1, x2, y2 in SMALL]
        found = video.detect(frame(moved))
        searched.append(video.searched)
        assert boxes(found) == [list(map(float, moved[0]))]  # followed as it moves, 3 px a frame
    assert searched == [True, False, False, True, False, False, True]
    assert search.searches == 3


def test_a_new_small_face_waits_for_the_next_search_and_a_cut_searches_at_once():
    search = CountingSearch()
    video = VideoDetection(search, search_every_frames=10)
    video.detect(frame(SMALL))
    assert boxes(video.detect(frame(SMALL + NEW_SMALL))) == [list(map(float, SMALL[0]))]  # not around any known face
    assert len(video.detect(frame(SMALL + NEW_SMALL), new_shot=True)) == 2 and video.searched
    assert search.searches == 2


def test_a_large_new_face_is_found_between_searches():
    """Every 4th frame between searches also looks at the whole picture, shrunk to a 64-px region: faces from
    25 px there, 250 px in a 640-px frame."""
    video = VideoDetection(CountingSearch(), search_every_frames=10, whole_picture_every_frames=4)
    video.detect(frame(SMALL))
    large = [(300, 20, 640, 360)]
    found = [len(video.detect(frame(SMALL + large))) for _ in range(4)]
    assert found == [1, 1, 1, 2] and not video.searched


def test_live_searches_in_the_background_and_its_faces_join_the_next_frame():
    now = [0.0]
    search = CountingSearch()
    with ThreadPoolExecutor(max_workers=1) as executor:
        live = LiveDetection(search, 1.0, BackgroundSearches(executor, busy_share=1.0, clock=lambda: now[0]), clock=lambda: now[0])

        def detect(squares):
            found = live.detect(frame(squares))
            live.tend(frame(squares))  # after each frame, on the caller's thread
            return found

        def wait_for_search():
            pending = live._pending
            assert pending is not None
            pending.result(timeout=10)

        assert len(detect(SMALL)) == 0 and not live.searched  # the first frame's search starts, not awaited...
        wait_for_search()
        assert len(detect(SMALL)) == 0  # ...collected after this frame...
        assert len(detect(SMALL)) == 1  # ...its face followed from the next
        now[0] = 0.5
        assert len(detect(SMALL + NEW_SMALL)) == 1  # no search due yet: the new face waits
        now[0] = 1.2
        assert len(detect(SMALL + NEW_SMALL)) == 1  # due: started
        wait_for_search()
        detect(SMALL + NEW_SMALL)
        found = detect(SMALL + NEW_SMALL)
        np.testing.assert_allclose(sorted(boxes(found)), sorted(SMALL + NEW_SMALL), atol=1.5)
    assert search.searches == 2


def test_background_searches_keep_to_their_share_of_the_time():
    """However many streams want one, a search starts only after the last one's time x (1 / share - 1)."""
    now = [10.0]
    with ThreadPoolExecutor(max_workers=1) as executor:
        background = BackgroundSearches(executor, busy_share=0.25, clock=lambda: now[0])
        assert background.ready()
        blocker = threading.Event()
        executor.submit(blocker.wait)  # the one thread is busy: the search waits in line
        started = background.start(CountingSearch(), frame(SMALL))
        assert not background.ready()  # one at a time
        blocker.set()
        seconds = started.result(timeout=10)[1]
        assert not background.ready()  # done: idle for 3x its time from now
        now[0] += seconds * 3 - 1e-3
        assert not background.ready()
        now[0] += 2e-3
        assert background.ready()
        background.start(CountingSearch(), frame(SMALL)).result(timeout=10)
        assert not background.ready() and background.ready(first=True)  # a new stream's first search skips the idle time


def test_a_stream_that_ends_during_its_search_leaves_the_budget_free():
    now = [0.0]
    with ThreadPoolExecutor(max_workers=1) as executor:
        background = BackgroundSearches(executor, busy_share=1.0, clock=lambda: now[0])
        gone = LiveDetection(CountingSearch(), 1.0, background, clock=lambda: now[0])
        gone.detect(frame(SMALL))
        gone.tend(frame(SMALL))
        gone._pending.result(timeout=10)  # its search ends after the stream did: nobody collects it
        del gone
        assert background.ready()


class HeldExecutor:
    """Runs what it is given only on ``release()``: until then every search it holds is in flight (a thread pool
    would finish one now and then before the next stream asks, and the test would race it)."""

    def __init__(self) -> None:
        self.held: list[tuple[Future, Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        future: Future = Future()
        self.held.append((future, fn, args))
        return future

    def release(self) -> None:
        for future, fn, args in self.held:
            future.set_result(fn(*args))
        self.held.clear()


def test_many_live_streams_share_one_budget():
    now = [0.0]
    executor = HeldExecutor()
    background = BackgroundSearches(executor, busy_share=0.5, clock=lambda: now[0])  # type: ignore[arg-type]
    streams = [LiveDetection(CountingSearch(), 1.0, background, clock=lambda: now[0]) for _ in range(3)]
    for live in streams:
        live.detect(frame(SMALL))
        live.tend(frame(SMALL))
    assert [live._pending is not None for live in streams] == [True, False, False]  # one search at a time
    assert len(executor.held) == 1
    executor.release()
    streams[1].tend(frame(SMALL))  # the first search is over: the next stream's first search may start
    assert len(executor.held) == 1 and streams[1]._pending is not None


class FailingExecutor:
    def submit(self, fn, *args, **kwargs) -> Future:
        future: Future = Future()
        future.set_exception(RuntimeError("search failed"))
        return future


def test_a_failed_background_search_is_logged_and_the_stream_goes_on(caplog):
    now = [0.0]
    live = LiveDetection(CountingSearch(), 1.0, BackgroundSearches(FailingExecutor(), clock=lambda: now[0]), clock=lambda: now[0])
    live.detect(frame(SMALL))
    live.tend(frame(SMALL))  # started: failed at once
    live.tend(frame(SMALL))  # collected: logged
    assert "background face search failed" in caplog.text
    now[0] = 2.0
    live.tend(frame(SMALL))  # tried again on schedule
    assert live._pending is not None


def test_without_background_searches_live_searches_in_line_when_due():
    now = [0.0]
    search = CountingSearch()
    live = LiveDetection(search, search_every_s=1.0, clock=lambda: now[0])
    assert len(live.detect(frame(SMALL))) == 1 and live.searched
    now[0] = 1.0
    assert len(live.detect(frame(SMALL + NEW_SMALL))) == 2 and live.searched
    assert search.searches == 2


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: VideoDetection(CountingSearch(), 0), "search_every_frames and whole_picture_every_frames must be >= 1, got 0, 4"),
        (lambda: LiveDetection(CountingSearch(), 0.0), "search_every_s must be > 0 and whole_picture_every_frames >= 1, got 0.0, 2"),
        (lambda: BackgroundSearches(FailingExecutor(), busy_share=0.0), "busy_share must be in (0, 1], got 0.0"),
    ],
)
def test_misuse_fails_fast_saying_why(make, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        make()
