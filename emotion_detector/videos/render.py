"""The annotated video: every frame of the source with each person's box, id and labels, encoded as H.264
in an MP4 with the index at the front (plays and seeks in every browser while it downloads)."""

from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from emotion_detector.labels import EMOTIONS
from emotion_detector.videos.analysis import decode_frames
from emotion_detector.videos.summary import PersonFrame

PALETTE = [(48, 164, 108), (0, 144, 255), (229, 72, 77), (142, 78, 198), (247, 107, 21), (255, 197, 61), (0, 162, 199), (214, 64, 159)]


def render_annotated(
    source: Path,
    target: Path,
    people: dict[int, list[PersonFrame]],
    fps: float,
    frame_count: int,
    hold_frames: int,
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Draws each person's latest observation for up to ``hold_frames`` frames (analysis may skip frames)
    and eases the label over time so it does not flicker."""
    at_frame: dict[int, list[tuple[int, PersonFrame]]] = {}
    for person, frames in people.items():
        for frame in frames:
            at_frame.setdefault(frame.frame_index, []).append((person, frame))
    shown: dict[int, tuple[int, PersonFrame, np.ndarray]] = {}  # person → (frame seen, observation, smoothed probabilities)
    rate = Fraction(fps).limit_denominator(1001)
    with av.open(str(target), mode="w", format="mp4", options={"movflags": "+faststart"}) as output:
        stream = None
        for index, image in decode_frames(source, 0, frame_count):
            if stream is None:
                stream = output.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "23"})
                stream.width, stream.height = image.shape[1] // 2 * 2, image.shape[0] // 2 * 2  # yuv420p needs even sizes
                stream.pix_fmt = "yuv420p"
                # x264's frame threads, not PyAV's default of slice threads: 1.9 instead of 2.7 ms per 640x360
                # frame on 2 cores, and a slightly smaller file.
                stream.codec_context.thread_type = "FRAME"
                # Tag what bgr_to_frame produces, so players do not guess BT.709 for HD sizes.
                context = stream.codec_context
                context.colorspace, context.color_primaries, context.color_trc, context.color_range = 6, 6, 6, 1  # SMPTE 170M, limited
            for person, observation in at_frame.get(index, []):
                previous = shown.get(person)
                probabilities = np.asarray(observation.emotion)
                if previous is not None:
                    probabilities = 0.6 * previous[2] + 0.4 * probabilities
                shown[person] = (index, observation, probabilities)
            for person, (seen, observation, probabilities) in list(shown.items()):
                if index - seen > hold_frames:
                    del shown[person]
                    continue
                _draw(image, person, observation, probabilities)
            output.mux(stream.encode(bgr_to_frame(image[: stream.height, : stream.width])))
            if on_progress and index % 25 == 0:
                on_progress(index / max(1, frame_count))
        if stream is not None:
            output.mux(stream.encode(None))


def bgr_to_frame(image_bgr: np.ndarray) -> av.VideoFrame:
    """BGR (even sides) → a yuv420p frame, converted by OpenCV: the encoder gets the pixel format it needs
    without a swscale pass, which costs several times more here. BT.601, limited range."""
    return av.VideoFrame.from_ndarray(cv2.cvtColor(image_bgr, cv2.COLOR_BGR2YUV_I420), format="yuv420p")


def _draw(image: np.ndarray, person: int, observation: PersonFrame, probabilities: np.ndarray) -> None:
    colour = PALETTE[(person - 1) % len(PALETTE)][::-1]  # RGB → BGR
    x1, y1, x2, y2 = (round(v) for v in observation.box_xyxy)
    thickness = max(2, image.shape[1] // 320)
    cv2.rectangle(image, (x1, y1), (x2, y2), colour, thickness)
    top = int(np.argmax(probabilities))
    female = observation.female_probability
    label = f"#{person} {EMOTIONS[top]} {probabilities[top]:.0%} | ~{observation.age_years:.0f} y {'F' if female >= 0.5 else 'M'}"
    scale = max(0.4, image.shape[1] / 1600)
    (width, height), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    y = max(height + baseline + 2, y1 - 4)
    cv2.rectangle(image, (x1, y - height - baseline - 2), (x1 + width + 4, y + 2), colour, cv2.FILLED)
    cv2.putText(image, label, (x1 + 2, y - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
