"""Where frames come from, for the command line and edge mode: an image, a folder, a video file, a camera,
a network stream, or one image on stdin. Each kind says how the pipeline must run over it: pictures one by
one (image mode), files frame by frame (video mode), cameras and streams at their own pace (live mode: the
newest frame wins, frames that arrive while one is analysed are dropped)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import av
import cv2
import numpy as np

from emotion_detector.frames import FrameError, ImageLimits, decode_image
from emotion_detector.pipeline import RunningMode
from emotion_detector.videos.analysis import frame_to_bgr, set_decoding_threads

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
VIDEO_SUFFIXES = {".mp4", ".mov", ".m4v", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceKind(StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    CAMERA = "camera"
    STREAM = "stream"
    STDIN = "stdin"

    @property
    def mode(self) -> RunningMode:
        if self in (SourceKind.IMAGE, SourceKind.STDIN):
            return RunningMode.IMAGE
        return RunningMode.VIDEO if self is SourceKind.VIDEO else RunningMode.LIVE

    @property
    def tracked(self) -> bool:
        return self.mode is not RunningMode.IMAGE


class SourceError(Exception):
    """A source that cannot be analysed (missing, unreadable, not an image or video, a stream that will not
    open or that broke off). ``str()`` is the one-line message naming the source."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


@dataclass(frozen=True)
class Source:
    kind: SourceKind
    location: str  # as the user gave it (a path, a URL, a camera index, "-")

    @property
    def name(self) -> str:
        return "stdin" if self.kind is SourceKind.STDIN else self.location


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source (for a live source: frames read, dropped ones included)
    timestamp_ms: float  # from the start of the source
    image_bgr: np.ndarray


def expand(argument: str) -> list[Source]:
    """One command-line SOURCE → the sources it stands for (a folder: every image and video inside it,
    recursively, in name order). Raises SourceError for something that is none of them."""
    if argument == "-":
        return [Source(SourceKind.STDIN, "-")]
    if argument.isdigit():
        return [Source(SourceKind.CAMERA, argument)]
    if argument.lower().startswith(STREAM_SCHEMES):
        return [Source(SourceKind.STREAM, argument)]
    path = Path(argument)
    if path.is_dir():
        found = [p for p in sorted(path.rglob("*")) if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
        return [Source(SourceKind.IMAGE if p.suffix.lower() in IMAGE_SUFFIXES else SourceKind.VIDEO, str(p)) for p in found]
    if not path.exists():
        raise SourceError(argument, "no such file or directory")
    if not path.is_file():
        raise SourceError(argument, "not a regular file")
    # A JPEG or PNG by content is an image whatever its name; a file named as an image is read as one, so
    # what is wrong with it is said in an image's terms; anything else is for FFmpeg to read as a video.
    with path.open("rb") as file:
        head = file.read(16)
    if head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or path.suffix.lower() in IMAGE_SUFFIXES:
        return [Source(SourceKind.IMAGE, argument)]
    return [Source(SourceKind.VIDEO, argument)]


def read_image(source: Source, limits: ImageLimits) -> np.ndarray:
    try:
        data = sys.stdin.buffer.read(limits.max_bytes + 1) if source.kind is SourceKind.STDIN else Path(source.location).read_bytes()
    except OSError as error:
        raise SourceError(source.name, f"cannot be read ({error.strerror or error})") from None
    try:
        return decode_image(data, limits)
    except FrameError as error:
        raise SourceError(source.name, error.message) from None


def video_fps(source: Source) -> float:
    """A video file's frame rate from its header (30 when it states none)."""
    with contextlib.suppress(Exception), av.open(source.location) as container:
        rate = container.streams.video[0].average_rate
        if rate:
            return float(rate)
    return 30.0


def video_frame_count(source: Source) -> int | None:
    """Frames in a video file from its header (for progress), or None when the header does not say."""
    with contextlib.suppress(Exception), av.open(source.location) as container:
        return container.streams.video[0].frames or None
    return None


def read_video(source: Source) -> Generator[Frame]:
    """Every frame of a video file, in display order."""
    for index, timestamp_ms, frame in _decode(source):
        yield Frame(index, timestamp_ms, frame_to_bgr(frame))


def read_paced(
    source: Source, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
) -> Generator[Frame]:
    """A video file played at its own frame rate, as a camera would show it (edge mode, live mode): each frame
    is due at the start plus its timestamp. A consumer that keeps up gets every frame at its time; one that
    is behind gets the newest due frame, and the frames it missed are dropped (counted by the gaps in
    ``index``), never queued. Ends with the file. Frames are decoded in this thread: decoding one costs far
    less than analysing one, and only the frames handed out are converted to BGR."""
    decoded = _decode(source)
    with contextlib.closing(decoded):
        upcoming = next(decoded, None)
        # Frame times are counted from the first frame (a file's first timestamp need not be 0).
        first_ms, started_s = (upcoming[1] if upcoming else 0.0), clock()

        def late_s(timestamp_ms: float) -> float:
            return clock() - started_s - (timestamp_ms - first_ms) / 1000

        while upcoming is not None:
            due, upcoming = upcoming, next(decoded, None)
            while upcoming is not None and late_s(upcoming[1]) >= 0:  # a newer frame is due as well
                due, upcoming = upcoming, next(decoded, None)
            index, timestamp_ms, frame = due
            wait_s = -late_s(timestamp_ms)
            if wait_s > 0:
                sleep(wait_s)
            yield Frame(index, timestamp_ms, frame_to_bgr(frame))


def _decode(source: Source) -> Generator[tuple[int, float, av.VideoFrame]]:
    """A video file's frames in display order as (index, timestamp_ms, frame), not converted yet."""
    try:
        container = av.open(source.location)
    except av.FFmpegError as error:
        raise SourceError(source.name, f"not a video FFmpeg can read ({_reason(error)})") from None
    with container:
        if not container.streams.video:
            raise SourceError(source.name, "has no video stream")
        stream = container.streams.video[0]
        set_decoding_threads(stream)
        index = 0
        try:
            for frame in container.decode(stream):
                yield index, round((frame.time or 0.0) * 1000, 1), frame
                index += 1
        except av.FFmpegError as error:
            raise SourceError(source.name, f"broke off after {index} frames ({_reason(error)})") from None
        if index == 0:
            raise SourceError(source.name, "has no frames that could be decoded")


def read_live(source: Source, open_timeout_s: float = 10.0) -> Generator[Frame]:
    """A camera or a network stream at its own pace. A reader thread keeps only the newest frame, so a slow
    consumer gets the latest picture and the frames in between are dropped (counted by the gaps in
    ``index``), never queued. Ends when the source ends; raises SourceError when it will not open or
    breaks off mid-way."""
    reader = _LatestFrameReader(source, open_timeout_s)
    try:
        yield from reader.frames()
    finally:
        reader.stop()


class _LatestFrameReader:
    def __init__(self, source: Source, open_timeout_s: float):
        self.source = source
        self.open_timeout_s = open_timeout_s
        self._condition = threading.Condition()
        self._latest: Frame | None = None
        self._ended = False
        self._error: SourceError | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name=f"read {source.name}", daemon=True)
        self._thread.start()

    def frames(self) -> Iterator[Frame]:
        while True:
            with self._condition:
                self._condition.wait_for(lambda: self._latest is not None or self._ended)
                frame, self._latest = self._latest, None
                if frame is None:
                    if self._error:
                        raise self._error
                    return
            yield frame

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _publish(self, frame: Frame) -> None:
        with self._condition:
            self._latest = frame
            self._condition.notify()

    def _finish(self, error: SourceError | None = None) -> None:
        with self._condition:
            self._ended, self._error = True, error
            self._condition.notify()

    def _read(self) -> None:
        try:
            if self.source.kind is SourceKind.CAMERA:
                self._read_camera()
            else:
                self._read_stream()
        except SourceError as error:
            self._finish(error)
        except Exception as error:  # a reader must always end the consumer's wait
            self._finish(SourceError(self.source.name, f"failed ({error})"))
        else:
            self._finish()

    def _read_camera(self) -> None:
        capture = cv2.VideoCapture(int(self.source.location))
        try:
            if not capture.isOpened():
                raise SourceError(self.source.name, f"camera {self.source.location} cannot be opened")
            started, index = time.monotonic(), 0
            while not self._stopping.is_set():
                ok, image = capture.read()
                if not ok:
                    if index == 0:
                        raise SourceError(self.source.name, "the camera gave no picture")
                    return
                self._publish(Frame(index, round((time.monotonic() - started) * 1000, 1), image))
                index += 1
        finally:
            capture.release()

    def _read_stream(self) -> None:
        options = {"rw_timeout": str(int(self.open_timeout_s * 1e6))}  # microseconds; a silent server breaks off instead of hanging
        if self.source.location.lower().startswith(("rtsp://", "rtsps://")):
            options["rtsp_transport"] = "tcp"
        try:
            container = av.open(self.source.location, options=options, timeout=self.open_timeout_s)
        except av.FFmpegError as error:
            raise SourceError(self.source.name, f"the stream cannot be opened ({_reason(error)})") from None
        with container:
            if not container.streams.video:
                raise SourceError(self.source.name, "the stream has no video")
            stream = container.streams.video[0]
            index, first_time = 0, None
            try:
                for frame in container.decode(stream):
                    if self._stopping.is_set():
                        return
                    first_time = frame.time if first_time is None else first_time
                    timestamp_s = (frame.time - first_time) if frame.time is not None and first_time is not None else 0.0
                    self._publish(Frame(index, round(timestamp_s * 1000, 1), frame_to_bgr(frame)))
                    index += 1
            except av.FFmpegError as error:
                raise SourceError(self.source.name, f"the stream broke off after {index} frames ({_reason(error)})") from None
            if index == 0:
                raise SourceError(self.source.name, "the stream sent no frames")


def _reason(error: av.FFmpegError) -> str:
    return getattr(error, "strerror", None) or str(error)
