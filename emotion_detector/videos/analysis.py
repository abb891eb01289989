"""Analyse a stretch of a video: decode (PyAV), then the video-mode FramePipeline (the live path's stages
and rules, with detection running ahead and the models batched over several frames)."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import av
import cv2
import numpy as np

from emotion_detector.pipeline import Face, FaceAnalyzer, FrameAnalysis, RunningMode
from emotion_detector.videos.probe import frame_timestamps

FIRST_UNCONFIRMED_ID = 1_000_000  # ids for faces the tracker never confirmed (seen in one frame only)


class Cancelled(Exception):
    pass


# Cores the video pipeline keeps busy besides the thread that decodes: detection and the models.
PIPELINE_BUSY_CORES = 2


def set_decoding_threads(stream: av.VideoStream) -> None:
    """FFmpeg's decoding threads only on cores the analysis leaves free. Where there are none (2 cores), its
    frame threads only add work: a 640x360 H.264 frame decodes in ~0.5 ms on one thread, and the pipeline's
    CPU time per frame fell ~8 % without them (bench.cli, AMD EPYC Zen 4, 2 cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    spare = cores - PIPELINE_BUSY_CORES
    if spare >= 2:
        stream.thread_type = "AUTO"  # frame- and slice-threaded decoding
        stream.codec_context.thread_count = spare
    else:
        stream.thread_type = "NONE"


def decode_frames(path: Path, start: int, stop: int) -> Iterator[tuple[int, np.ndarray]]:
    """(frame index, BGR image) for start <= index < stop. Seeks to the keyframe before ``start`` and
    numbers frames by their position in the file's timestamp order (exact for variable frame rates)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        set_decoding_threads(stream)
        timestamps = frame_timestamps(container)
        index_of = {pts: i for i, pts in enumerate(timestamps)}
        stop = min(stop, len(timestamps))
        if start >= stop:
            return
        container.seek(timestamps[start], stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            index = index_of.get(frame.pts) if frame.pts is not None else None
            if index is None or index < start:
                continue
            if index >= stop:
                return
            yield index, frame_to_bgr(frame)


BT601_OR_UNSPECIFIED = {2, 5, 6}  # AVColorSpace: unspecified (decoders assume BT.601 for SD), BT470BG, SMPTE170M


def frame_to_bgr(frame: av.VideoFrame) -> np.ndarray:
    """A decoded frame as a BGR image. OpenCV converts 4:2:0 BT.601 (most phone and web video) in under a
    millisecond per 640×360 frame where PyAV's swscale conversion takes ~7 ms; anything else goes to PyAV."""
    if frame.format.name == "yuv420p" and frame.colorspace in BT601_OR_UNSPECIFIED and frame.width % 2 == frame.height % 2 == 0:
        return cv2.cvtColor(frame.to_ndarray(format="yuv420p"), cv2.COLOR_YUV2BGR_I420)
    return frame.to_ndarray(format="bgr24")


def analyse_segment(
    analyzer: FaceAnalyzer,
    path: Path,
    fps: float,
    start: int,
    stop: int,
    every_n_frames: int = 1,
    on_progress: Callable[[int], bool] | None = None,
) -> list[FrameAnalysis]:
    """The analysed frames in [start, stop) (every n-th frame of the video, counted from its first frame so
    neighbouring segments analyse the same overlap frames), through the video-mode FramePipeline: the same
    stages and rules as the live path. ``on_progress(frames_done)`` is called after each frame; returning
    False raises Cancelled. Faces the tracker never confirmed get ids of their own (link_first_sightings)."""
    pipeline = analyzer.pipeline(RunningMode.VIDEO, nominal_fps=fps / every_n_frames)
    frames = ((index, image) for index, image in decode_frames(path, start, stop) if index % every_n_frames == 0)
    analysed: list[FrameAnalysis] = []
    with contextlib.closing(frames), contextlib.closing(pipeline.run(frames)) as results:  # stops decoding and the look-ahead
        for analysis in results:
            analysed.append(analysis)
            if on_progress and not on_progress(analysis.video_frame_index - start + 1):
                raise Cancelled()
    if on_progress and not on_progress(stop - start):
        raise Cancelled()
    return list(link_first_sightings(analysed))


def box_iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def link_first_sightings(frames: Iterable[FrameAnalysis]) -> Iterator[FrameAnalysis]:
    """ByteTrack confirms a face that appears mid-stream on its second frame, so its first frame has no
    id. Give that sighting the id of the track that starts in the next analysed frame at the same place; a
    face never confirmed gets an id of its own (from FIRST_UNCONFIRMED_ID). Nothing is dropped, and every
    face of the result has a track id. A sighting just before a shot cut is never linked across it.
    Streams: each frame comes out as soon as the next one is in."""
    seen: set[int] = set()
    next_own_id = FIRST_UNCONFIRMED_ID
    previous: FrameAnalysis | None = None
    for frame in frames:
        starting = [face for face in frame.faces if face.track_id is not None and face.track_id not in seen]
        seen.update(face.track_id for face in starting if face.track_id is not None)
        if previous is not None:
            # A face before a cut is never linked to a track after it.
            linked, next_own_id = _linked(previous, [] if frame.shot_cut else starting, next_own_id)
            yield linked
        previous = frame
    if previous is not None:
        yield _linked(previous, [], next_own_id)[0]


def _linked(frame: FrameAnalysis, starting_next: list[Face], next_own_id: int) -> tuple[FrameAnalysis, int]:
    if all(face.track_id is not None for face in frame.faces):
        return frame, next_own_id
    faces = []
    for face in frame.faces:
        if face.track_id is None:
            best = max(starting_next, key=functools.partial(_overlap_with, face), default=None)
            if best is not None and box_iou(best.box_xyxy, face.box_xyxy) >= 0.3:
                face = replace(face, track_id=best.track_id)
            else:
                face, next_own_id = replace(face, track_id=next_own_id), next_own_id + 1
        faces.append(face)
    return replace(frame, faces=faces), next_own_id


def _overlap_with(face: Face, other: Face) -> float:
    return box_iou(other.box_xyxy, face.box_xyxy)
