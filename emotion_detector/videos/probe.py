"""Is this file a video we can analyse? Decided by decoding it (PyAV / FFmpeg), never by its name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av

STILL_IMAGE_FORMATS = {"image2", "jpeg_pipe", "png_pipe", "webp_pipe", "bmp_pipe", "gif", "tiff_pipe", "pgm_pipe", "ppm_pipe"}


class VideoRejected(ValueError):
    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    codec: str


def frame_timestamps(container: av.container.InputContainer) -> list[int]:
    """Presentation timestamps of every video frame, in display order, from demuxing alone (no decoding).
    A frame's index in this list is its frame number, also for variable-frame-rate files (phones,
    browser recordings), where 'time x fps' is not."""
    stream = container.streams.video[0]
    container.seek(0)
    return sorted(packet.pts for packet in container.demux(stream) if packet.size and packet.pts is not None)


def probe(path: Path, max_duration_s: float, max_pixels: int = 4096 * 2160) -> VideoInfo:
    """Open the container, check the frame size its header declares, count frames by demuxing, decode the first
    frame (and check its size again: the header may lie). Raises VideoRejected."""
    try:
        container = av.open(str(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as error:
        raise VideoRejected("not_a_video", f"the file is not a readable video ({_reason(error)})") from None
    with container:
        if container.format.name in STILL_IMAGE_FORMATS:
            raise VideoRejected("not_a_video", f"the file is a still image ({container.format.name}), not a video")
        if not container.streams.video:
            raise VideoRejected("not_a_video", "the file has no video stream")
        stream = container.streams.video[0]
        _check_pixels(stream.codec_context.width, stream.codec_context.height, max_pixels)
        try:
            timestamps = frame_timestamps(container)
        except av.error.FFmpegError as error:
            raise VideoRejected("corrupt_video", f"the video is damaged ({_reason(error)})") from None
        if len(timestamps) < 2:
            raise VideoRejected("not_a_video", f"the file has {len(timestamps)} frame(s); a video needs at least 2")
        declared = stream.frames
        if declared and len(timestamps) < 0.95 * declared:
            raise VideoRejected("truncated_video", f"the video is truncated: {len(timestamps)} of its {declared} frames are present")
        if stream.time_base is None:
            raise VideoRejected("corrupt_video", "the video stream has no time base")
        span_s = float((timestamps[-1] - timestamps[0]) * stream.time_base)
        # n frames span n - 1 frame intervals
        fps = (len(timestamps) - 1) / span_s if span_s > 0 else float(stream.average_rate or 0)
        if not 0 < fps <= 480:
            raise VideoRejected("corrupt_video", f"the video's frame timing is unusable ({fps:.1f} frames/s)")
        duration_s = len(timestamps) / fps
        if duration_s > max_duration_s:
            raise VideoRejected("video_too_long", f"the video is {duration_s:.0f} s long; the limit is {max_duration_s:.0f} s")
        container.seek(0)
        try:
            first = next(container.decode(stream))
        except (av.error.FFmpegError, StopIteration) as error:
            raise VideoRejected("corrupt_video", f"the first frame cannot be decoded ({_reason(error)})") from None
        _check_pixels(first.width, first.height, max_pixels)
        return VideoInfo(first.width, first.height, round(fps, 3), len(timestamps), round(duration_s, 3), stream.codec_context.name)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    # Every frame is decoded, drawn and encoded at this size by the workers: 8K frames cost ~130 MB each step.
    if width * height > max_pixels:
        raise VideoRejected("video_too_large", f"the video's frames are {width}x{height}; the limit is {max_pixels} pixels per frame")


def _reason(error: Exception) -> str:
    return getattr(error, "strerror", None) or str(error) or type(error).__name__
