"""The annotated video: every frame of the source with each person's box, id and labels, encoded as H.264
in an MP4 with the index at the front (plays and seeks in every browser while it downloads). It is drawn in
parts, one per analysed segment (a render task each, see jobs.py), which are joined at the end without
re-encoding."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import av
import cv2
import numpy as np
import numpy.typing as npt

from emotion_detector.labels import EMOTIONS
from emotion_detector.pipeline import Face
from emotion_detector.videos.analysis import decode_frames
from emotion_detector.videos.summary import PersonFrame

PALETTE = [(48, 164, 108), (0, 144, 255), (229, 72, 77), (142, 78, 198), (247, 107, 21), (255, 197, 61), (0, 162, 199), (214, 64, 159)]


def parts_dir(source_path: Path, job_attempt: int) -> Path:
    """One folder per run of a job: a retried job never mixes in the parts of the run before it."""
    return source_path.parent / f"annotated-parts-{job_attempt}"


def part_path(folder: Path, segment_index: int) -> Path:
    return folder / f"{segment_index:05d}.mp4"


def unique_scratch_path(path: Path) -> Path:
    """Where to write ``path`` before renaming it into place: unique, as a render task taken over from a
    stalled worker may be drawn twice at once (on several machines, or with the same pid in containers)."""
    return path.with_name(f"{path.stem}.{uuid.uuid4().hex}.part")


FRAMES_PER_BLOCK = 256


@dataclass(frozen=True)
class Label:
    """What is drawn for one person on one frame."""

    person: int
    observation: PersonFrame
    probabilities: np.ndarray  # the observation's expression probabilities (smoothed per track by the pipeline)
    uncertain: bool = False  # the top one is below the emotion model's calibrated threshold


class OverlayTimeline:
    """The labels to draw on each frame: a person's latest observation, held up for ``hold_frames`` frames
    (analysis may skip frames). Observations are already smoothed per track by the FramePipeline, the one
    smoothing rule of live, timelines and statistics, so the video shows the label the results show. A
    frame's labels depend only on observations at most ``lookback_frames`` before it, so the video can be
    drawn in parts, each part from the observations around it alone."""

    def __init__(
        self, people: dict[int, list[PersonFrame]], hold_frames: int, uncertain_below: float = 0.0, shot_cuts: list[int] | None = None
    ) -> None:
        self.hold_frames = hold_frames
        self.uncertain_below = uncertain_below
        self._cuts = np.array(sorted(shot_cuts or []), dtype=np.int64)  # a label is never held up across a cut
        self._people = {person: (np.array([f.frame_index for f in frames]), frames) for person, frames in people.items() if frames}
        self._emotions = {person: np.array([f.emotion for f in frames], dtype=np.float64) for person, (_, frames) in self._people.items()}
        # Who may be on screen in each block of frames: a long video with many people passing through
        # looks at a few people per frame, not at everyone.
        self._on_screen: dict[int, list[int]] = defaultdict(list)
        for person, (indices, _) in self._people.items():
            for block in range(int(indices[0]) // FRAMES_PER_BLOCK, (int(indices[-1]) + hold_frames) // FRAMES_PER_BLOCK + 1):
                self._on_screen[block].append(person)

    @staticmethod
    def lookback_frames(hold_frames: int) -> int:
        return hold_frames

    def labels_at(self, frame_index: int) -> list[Label]:
        labels = []
        for person in self._on_screen.get(frame_index // FRAMES_PER_BLOCK, ()):
            indices, frames = self._people[person]
            latest = int(np.searchsorted(indices, frame_index, side="right")) - 1
            if latest < 0 or frame_index - indices[latest] > self.hold_frames:
                continue
            # A cut in (observation, frame]: the face is another shot's, its box wherever it was.
            if np.searchsorted(self._cuts, indices[latest], side="right") != np.searchsorted(self._cuts, frame_index, side="right"):
                continue
            probabilities = self._emotions[person][latest]
            labels.append(Label(person, frames[latest], probabilities, bool(probabilities.max() < self.uncertain_below)))
        return labels


def render_part(
    source: Path,
    target: Path,
    timeline: OverlayTimeline,
    fps: float,
    frames: range,
    on_frame: Callable[[int], None] | None = None,
    blur_faces: bool = False,
) -> None:
    """Frames ``frames`` of the source with their labels drawn, as an H.264 MP4 of its own (join_parts puts
    the parts together). Every part is encoded with the same settings, so the parts share one H.264 header."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(target), mode="w", format="mp4") as output:
        stream = None
        for index, image in decode_frames(source, frames.start, frames.stop):
            if stream is None:
                stream = h264_stream(output, rate, image.shape[1], image.shape[0])
            for label in timeline.labels_at(index):
                draw_face(image, label.observation.face(label.person), uncertain=label.uncertain, blur=blur_faces)
            output.mux(stream.encode(bgr_to_frame(image[: stream.height, : stream.width])))
            if on_frame:
                on_frame(index)
        if stream is None:
            raise ValueError(f"no frames {frames.start}-{frames.stop - 1} in {source.name}")
        output.mux(stream.encode(None))


def join_parts(parts: list[tuple[Path, int]], target: Path, fps: float) -> None:
    """(part file, its first frame) in order → one MP4 with the index at the front, by copying the
    compressed frames (no re-encoding). Each part starts with a keyframe, so the joined stream decodes as
    one; its timestamps are shifted to the part's place in the video."""
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
        joined, header = None, None
        for path, first_frame in parts:
            with av.open(str(path)) as part:
                stream = part.streams.video[0]
                if joined is None:
                    joined, header = output.add_stream_from_template(stream), stream.codec_context.extradata
                elif stream.codec_context.extradata != header:
                    raise ValueError(f"{path.name} was encoded with other settings than the first part")
                if stream.time_base is None:
                    raise ValueError(f"{path.name} has no time base")
                shift = round(Fraction(first_frame) / rate / stream.time_base)
                for packet in part.demux(stream):
                    if packet.dts is None:  # the demuxer's empty packet at the end
                        continue
                    if packet.pts is None:
                        raise ValueError(f"{path.name} has a frame without a presentation time")
                    packet.pts += shift
                    packet.dts += shift
                    packet.stream = joined
                    output.mux(packet)


def bgr_to_frame(image_bgr: np.ndarray) -> av.VideoFrame:
    """BGR (even sides) → a yuv420p frame, converted by OpenCV: the encoder gets the pixel format it needs
    without a swscale pass, which costs several times more here. BT.601, limited range."""
    # cv2's stubs type every result as some integer or float array; an 8-bit BGR image gives 8-bit YUV.
    yuv = cast(npt.NDArray[np.uint8], cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YUV_I420))
    return av.VideoFrame.from_ndarray(yuv, format="yuv420p")


def h264_stream(output: av.container.OutputContainer, rate: Fraction | int, width: int, height: int) -> av.VideoStream:
    """The one H.264 setting of every annotated video: parts drawn separately share one header, so they join
    without re-encoding."""
    stream = output.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "23"})
    stream.width, stream.height = width // 2 * 2, height // 2 * 2  # yuv420p needs even sizes
    stream.pix_fmt = "yuv420p"
    # x264's frame threads, not PyAV's default of slice threads: 1.9 instead of 2.7 ms per 640x360 frame on 2
    # cores, and a slightly smaller file.
    stream.codec_context.thread_type = "FRAME"
    # Tag what bgr_to_frame produces, so players do not guess BT.709 for HD sizes.
    context = stream.codec_context
    context.colorspace, context.color_primaries, context.color_trc, context.color_range = 6, 6, 6, 1  # SMPTE 170M, limited
    return stream


BLUR_MARGIN = 0.15  # of the box's size on every side: hair, ears and a box that lags a moving face
BLUR_BLOCKS = 8  # the face is shown as this many coarse blocks across: no identity is left to recover


def blur_face(image: np.ndarray, box_xyxy: tuple[float, float, float, float]) -> None:
    """Pixelate the face (and a margin around it) in ``image``, in place: it is brought down to a few blocks
    (nothing finer survives) and back up smoothly."""
    x1, y1, x2, y2 = box_xyxy
    margin_x, margin_y = (x2 - x1) * BLUR_MARGIN, (y2 - y1) * BLUR_MARGIN
    height, width = image.shape[:2]
    left, top = max(0, int(x1 - margin_x)), max(0, int(y1 - margin_y))
    right, bottom = min(width, int(np.ceil(x2 + margin_x))), min(height, int(np.ceil(y2 + margin_y)))
    if right - left < 2 or bottom - top < 2:
        return
    region = image[top:bottom, left:right]
    blocks = cv2.resize(region, (BLUR_BLOCKS, max(1, round(BLUR_BLOCKS * (bottom - top) / (right - left)))), interpolation=cv2.INTER_AREA)
    # Smoothly up again: the blocks' edges would draw a grid (and a face-like pattern) of their own.
    region[:] = cv2.resize(blocks, (right - left, bottom - top), interpolation=cv2.INTER_CUBIC)


def draw_face(image: np.ndarray, face: Face, uncertain: bool | None = None, blur: bool = False) -> None:
    """A face's box, id and labels drawn onto ``image`` (BGR, in place); ``uncertain`` defaults to the face's own;
    ``blur`` pixelates the face first (the labels stay readable)."""
    if blur:
        blur_face(image, face.box_xyxy)
    person = face.track_id or 0
    colour = PALETTE[(person - 1) % len(PALETTE)][::-1]  # RGB → BGR
    x1, y1, x2, y2 = (round(v) for v in face.box_xyxy)
    thickness = max(2, image.shape[1] // 320)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    probabilities = face.emotion_probabilities
    top = int(np.argmax(probabilities))
    shown_uncertain = face.emotion_uncertain if uncertain is None else uncertain
    expression = f"uncertain (maybe {EMOTIONS[top]})" if shown_uncertain else f"{EMOTIONS[top]} {probabilities[top]:.0%}"
    who = f"#{person} " if face.track_id is not None else ""
    text = f"{who}{expression} | ~{face.age_years:.0f} y {'F' if face.female_probability >= 0.5 else 'M'}"
    scale = max(0.4, image.shape[1] / 1600)
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y = max(height + baseline + 2, y1 - 4)
    cv2.rectangle(image, (x1, y - height - baseline - 2), (x1 + width + 4, y + 2), colour, cv2.FILLED)
    cv2.putText(image, text, (x1 + 2, y - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


class AnnotatedVideoWriter:
    """Frames with their faces drawn, encoded as they come into an H.264 MP4 (the index at the front, so it
    plays in browsers); frame times from the source's timestamps, so dropped frames keep the pace."""

    def __init__(self, target: Path, blur_faces: bool = False):
        self.target = target
        self.blur_faces = blur_faces
        self._output = av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"})
        self._stream: av.VideoStream | None = None
        self._last_pts = -1

    def write(self, image_bgr: np.ndarray, faces: list[Face], timestamp_ms: float) -> None:
        """Draws onto ``image_bgr`` itself: the pipeline is done with a frame once its record is out."""
        if self._stream is None:
            self._stream = h264_stream(self._output, 30, image_bgr.shape[1], image_bgr.shape[0])
            self._stream.codec_context.time_base = Fraction(1, 1000)
        for face in faces:
            draw_face(image_bgr, face, blur=self.blur_faces)
        frame = bgr_to_frame(image_bgr[: self._stream.height, : self._stream.width])
        frame.pts, frame.time_base = max(round(timestamp_ms), self._last_pts + 1), Fraction(1, 1000)
        self._last_pts = frame.pts
        self._output.mux(self._stream.encode(frame))

    def close(self) -> None:
        if self._stream is not None:
            self._output.mux(self._stream.encode(None))
        self._output.close()
