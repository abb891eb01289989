"""Which detection each frame of a stream gets. A whole-picture search (``FaceSearch.find``) finds faces of every
size but costs many times a look around the faces already known (``FaceSearch.around``), and faces move little
from one frame to the next. So a stream searches the whole picture on its first frame and then now and then,
and in between looks again only around the last frame's faces:

- ``VideoDetection`` (every frame of a file, in order): a search on the first frame, after each shot cut and
  every ``search_every_frames`` frames; the same frames get the same faces on every run.
- ``LiveDetection`` (a camera or socket, frames as they come): searches run in the background, the first at
  once and then at most every ``search_every_s`` seconds, on one thread per process with a budget of its time
  (``BackgroundSearches``), while the frames go on being answered from the regions around known faces; the faces
  a search finds join those regions on the next frame after it ends. So a live answer never waits for a search,
  and many streams on few cores search less often instead of answering late.

Between searches the frames are also looked at whole, shrunk to one more region (the largest faces, for the
cost of one more face: live on every 2nd frame, in a video on every 4th), so someone stepping up to the camera
is found at once. A face turned to profile is followed (though not reported), so it is reported again as soon
as it turns back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future

import numpy as np
import supervision as sv

from emotion_detector.detection.search import FaceSearch, frontal_only

log = logging.getLogger(__name__)

# Regions around faces found by a background search are wider: the frame they were found on is a few old.
SEED_SIDE_PER_FACE = 3.0


class VideoDetection:
    def __init__(self, search: FaceSearch, search_every_frames: int, whole_picture_every_frames: int = 4):
        if search_every_frames < 1 or whole_picture_every_frames < 1:
            raise ValueError(
                f"search_every_frames and whole_picture_every_frames must be >= 1, got {search_every_frames}, {whole_picture_every_frames}"
            )
        self.search, self.search_every_frames, self.whole_picture_every_frames = search, search_every_frames, whole_picture_every_frames
        self._last: np.ndarray | None = None  # the last frame's boxes; None: nothing searched yet
        self._since_search = 0
        self.searched = False  # whether the last frame was searched whole (else: around known faces)

    def detect(self, image_bgr: np.ndarray, new_shot: bool = False) -> sv.Detections:
        last = self._last
        self.searched = last is None or new_shot or self._since_search + 1 >= self.search_every_frames
        if last is None or self.searched:
            found, self._since_search = self.search.find(image_bgr, profiles=True), 0
        else:
            self._since_search += 1
            whole = self._since_search % self.whole_picture_every_frames == 0
            found = self.search.around(image_bgr, last, profiles=True, whole_picture=whole)
        self._last = found.xyxy
        return frontal_only(found)


class BackgroundSearches:
    """Where a process's live streams search in the background: one thread (an executor of one worker), and a
    budget that keeps it busy at most ``busy_share`` of the time, so that however many streams ask, the frames
    being answered keep the cores. A search is started only once the last one's duration times
    (1 / busy_share - 1) has passed since it ended; a stream's first search only waits for the one running,
    so someone who just connected is not kept waiting by the streams already there. Not a lower thread
    priority: a low-priority thread holding the GIL would hold up every thread of the process.

    ``ready`` and ``start`` are called on the caller's thread (the event loop's, in the web app); the searches
    run on the executor's. The budget follows the searches themselves, not the streams that asked: a stream
    that ends while its search runs leaves nothing behind."""

    def __init__(self, executor: Executor, busy_share: float = 0.25, clock: Callable[[], float] = time.monotonic):
        if not 0 < busy_share <= 1:
            raise ValueError(f"busy_share must be in (0, 1], got {busy_share}")
        self.executor, self.busy_share, self.clock = executor, busy_share, clock
        self._current: Future[tuple[sv.Detections, float]] | None = None
        self._next_start = 0.0  # the clock's time from which another search may start

    def ready(self, first: bool = False) -> bool:
        """Whether a search may start now (``first``: a stream's first, which skips the idle time)."""
        current = self._current
        if current is not None:
            if not current.done():
                return False
            self._current = None
            seconds = current.result()[1] if current.exception() is None else 0.0
            self._next_start = self.clock() + seconds * (1 / self.busy_share - 1)
        return first or self.clock() >= self._next_start

    def start(self, search: FaceSearch, image_bgr: np.ndarray) -> Future[tuple[sv.Detections, float]]:
        self._current = self.executor.submit(_timed_search, search, image_bgr)
        return self._current


class LiveDetection:
    """Two halves: ``detect`` (CPU work, on any thread: the web app runs it on a native one) and ``tend`` (on the
    caller's own thread after each frame: it collects a finished background search and starts the next when due
    and the process's budget allows). They are apart because an executor may only be used from its owner's
    thread (gevent's native-thread pool refuses calls from its own workers)."""

    def __init__(
        self,
        search: FaceSearch,
        search_every_s: float,
        background: BackgroundSearches | None = None,
        clock: Callable[[], float] = time.monotonic,
        whole_picture_every_frames: int = 2,
    ):
        """``background``: where searches run (None: in ``detect``: the first frame's, then each when due)."""
        if search_every_s <= 0 or whole_picture_every_frames < 1:
            raise ValueError(
                f"search_every_s must be > 0 and whole_picture_every_frames >= 1, got {search_every_s}, {whole_picture_every_frames}"
            )
        self.search, self.search_every_s, self.background, self.clock = search, search_every_s, background, clock
        self.whole_picture_every_frames = whole_picture_every_frames
        self._frames = 0
        self._last: np.ndarray = np.zeros((0, 4), np.float32)
        self._seeds: np.ndarray = np.zeros((0, 4), np.float32)  # faces of a finished background search, not yet looked at
        self._searched_at: float | None = None  # when the last search started
        self._pending: Future[tuple[sv.Detections, float]] | None = None
        self.searched = False  # whether the last frame was searched whole in detect

    def detect(self, image_bgr: np.ndarray, new_shot: bool = False) -> sv.Detections:
        del new_shot  # a camera has no cuts to speak of; a lost face is found again by the next search
        now = self.clock()
        self.searched = self.background is None and (self._searched_at is None or now - self._searched_at >= self.search_every_s)
        if self.searched:
            self._searched_at = now
            found = self.search.find(image_bgr, profiles=True)
        else:
            regions, factors = self._regions()
            whole = self._frames % self.whole_picture_every_frames == 0  # the stream's first frame too
            self._frames += 1
            found = self.search.around(image_bgr, regions, factors, profiles=True, whole_picture=whole)
        self._last = found.xyxy
        return frontal_only(found)

    def tend(self, image_bgr: np.ndarray) -> None:
        """After a frame, on the caller's thread: keep a finished background search's faces for the next frame,
        and search ``image_bgr`` in the background if one is due (the stream's first frame at once)."""
        background = self.background
        if background is None:
            return
        if self._pending is not None and self._pending.done():
            pending, self._pending = self._pending, None
            try:
                self._seeds = pending.result()[0].xyxy
            except Exception:  # a search that failed is retried on schedule; the stream goes on meanwhile
                log.exception("background face search failed")
        now = self.clock()
        searched_at = self._searched_at
        due = searched_at is None or now - searched_at >= self.search_every_s
        if self._pending is None and due and background.ready(first=searched_at is None):
            self._searched_at = now
            self._pending = background.start(self.search, image_bgr)

    def _regions(self) -> tuple[np.ndarray, np.ndarray]:
        """The last frame's faces, and the new ones of a finished background search (wider regions)."""
        regions: np.ndarray = self._last
        seeds, self._seeds = self._seeds, np.zeros((0, 4), np.float32)
        if len(regions) and len(seeds):
            seeds = seeds[sv.box_iou_batch(seeds, regions).max(axis=1) <= self.search.options.merge_iou]
        factors = np.concatenate(
            [
                np.full(len(regions), self.search.options.region_side_per_face, np.float32),
                np.full(len(seeds), SEED_SIDE_PER_FACE, np.float32),
            ]
        )
        return np.concatenate([regions, seeds]).astype(np.float32), factors


def _timed_search(search: FaceSearch, image_bgr: np.ndarray) -> tuple[sv.Detections, float]:
    started = time.perf_counter()
    found = search.find(image_bgr, profiles=True)
    return found, time.perf_counter() - started
