"""Analyse images, folders, videos, cameras and streams from Python or the terminal (DESIGN.md §2, "CLI").

    from emotion_detector import analyze
    for record in analyze("clip.mp4", "photos/"):
        print(record.to_json())

Every source goes through the one FramePipeline, in the running mode its kind needs: pictures in image mode,
video files frame by frame in video mode, cameras and streams in live mode (the newest frame wins, frames
that arrive meanwhile are dropped). Records are yielded as they are made, so memory stays flat on long
inputs. The models run in this process unless a model server is named.
"""

from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.face_models import FaceModels, create_models
from emotion_detector.pipeline import FaceAnalyzer, FrameAnalysis, RunningMode
from emotion_detector.records import FrameRecord, PersonRecord, Record, SourceSummary
from emotion_detector.settings import Settings
from emotion_detector.sources import (
    Frame,
    Source,
    SourceError,
    SourceKind,
    expand,
    read_image,
    read_live,
    read_paced,
    read_video,
    video_fps,
)
from emotion_detector.videos.analysis import link_first_sightings
from emotion_detector.videos.summary import PersonFrame, PersonRule, person_stats

# Cameras and streams: frame numbers count the frames read (dropped ones too) at about this rate; the tracker
# keeps a lost face for the settings' time either way.
LIVE_NOMINAL_FPS = 30.0


@dataclass
class _People:
    """Each track's frames of one source, for the per-person summary (a few numbers per frame, no pixels)."""

    frames: defaultdict[int, list[PersonFrame]] = field(default_factory=lambda: defaultdict(list))
    analysed: int = 0

    def add(self, record: FrameRecord) -> None:
        self.analysed += 1
        for face in record.faces:
            if face.track_id is not None:
                self.frames[face.track_id].append(
                    PersonFrame(
                        record.frame,
                        face.box_xyxy,
                        tuple(float(p) for p in face.emotion_probabilities),
                        face.age_years,
                        face.female_probability,
                        face.score,
                        tuple(float(p) for p in face.emotion_raw_probabilities),
                    )
                )


class Analyzer:
    """The detector and the models, loaded once for any number of sources. A context manager: closing it
    releases the models (and the model server's connection)."""

    def __init__(self, model_server: str | None = None, settings: Settings | None = None):
        settings = settings or Settings()
        settings = settings.model_copy(update={"model_server": model_server or "inprocess"})
        self.settings = settings
        self.models: FaceModels = create_models(settings, timeout_s=max(settings.model_server_timeout_s, 10.0))
        self.faces = FaceAnalyzer(create_detector(DetectorOptions.from_settings(settings)), self.models, settings)

    def __enter__(self) -> Analyzer:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.models.close()

    def run(self, source: Source, every_n_frames: int = 1, summary: bool = False) -> Iterator[Record]:
        """The records of one source, as they are made. Raises SourceError for a bad source (the records
        already yielded stand; a stream that broke off still gets its summary first)."""
        for record, _image in self.run_with_images(source, every_n_frames, summary, keep_images=False):
            yield record

    def run_with_images(
        self, source: Source, every_n_frames: int = 1, summary: bool = False, keep_images: bool = True
    ) -> Iterator[tuple[Record, np.ndarray | None]]:
        """``run``, with each frame record's picture (for drawing it); None for person records."""
        if source.kind.mode is RunningMode.IMAGE:
            picture = read_image(source, self.faces.image_limits)
            analysis = self.faces.pipeline(RunningMode.IMAGE).process_image(picture, 0)
            yield FrameRecord(source.name, 0, 0.0, analysis.width, analysis.height, analysis.faces, analysis.detection), picture
            if summary:
                yield self._source_summary(source, analysis.width, analysis.height, 1, int(bool(analysis.faces))), None
            return
        fps = nominal_fps(source)  # a video's header, read once
        reader = read_video(source) if source.kind is SourceKind.VIDEO else read_live(source)
        people = _People() if summary else None
        broke_off: SourceError | None = None
        size, analysed, with_faces = (0, 0), 0, 0
        try:
            for record, image in self._tracked(source, reader, source.kind.mode, fps, every_n_frames, keep_images):
                if people is not None:
                    people.add(record)
                size, analysed, with_faces = (record.width, record.height), analysed + 1, with_faces + bool(record.faces)
                yield record, image
        except SourceError as error:  # a stream that broke off: what it showed until then is summarised too
            broke_off = error
        if people is not None:
            rule = PersonRule.from_settings(self.settings)  # the video results' rule: the same people count
            for person, frames in sorted(people.frames.items()):
                stats = person_stats(frames, fps, people.analysed, self.models.uncertain_below("emotion"), every_n_frames)
                yield PersonRecord(source.name, person, stats, rule.counts(stats)), None
            if analysed:
                yield self._source_summary(source, *size, analysed, with_faces), None
        if broke_off is not None:
            raise broke_off

    def _source_summary(self, source: Source, width: int, height: int, frames: int, frames_with_faces: int) -> SourceSummary:
        info = self.faces.detection_info(width, height)
        return SourceSummary(source.name, info.detector, info.min_face_px, frames, frames_with_faces)

    def run_live(self, source: Source, paced: bool = True, fps: float | None = None) -> Iterator[FrameRecord]:
        """A video file, camera or stream in live mode, as an edge device runs it: cameras and streams at their
        own pace, a video file played at its frame rate (``read_paced``; with ``paced=False`` every frame, as
        fast as they are analysed: for benchmarks). Frames that come while one is analysed are dropped.
        ``fps``: the tracker's nominal rate (default: ``nominal_fps(source)``)."""
        if not source.kind.tracked:
            raise SourceError(source.name, "is a single picture; live mode needs a video file, a camera or a stream")
        if source.kind is not SourceKind.VIDEO:
            reader = read_live(source)
        elif paced:
            reader = read_paced(source)
        else:
            reader = read_video(source)
        for record, _image in self._tracked(source, reader, RunningMode.LIVE, fps or nominal_fps(source), 1, keep_images=False):
            yield record

    def _tracked(
        self, source: Source, frames: Generator[Frame], mode: RunningMode, fps: float, every_n_frames: int, keep_images: bool
    ) -> Iterator[tuple[FrameRecord, np.ndarray | None]]:
        pipeline = self.faces.pipeline(mode, nominal_fps=fps / every_n_frames)
        # Frames between reading and their record: a few in video mode (detection ahead, one batch in flight,
        # one frame held to link first sightings), so nothing grows with the length of the source.
        pending: dict[int, tuple[float, np.ndarray | None]] = {}

        def wanted() -> Iterator[tuple[int, np.ndarray]]:
            for frame in frames:
                if frame.index % every_n_frames == 0:
                    pending[frame.index] = (frame.timestamp_ms, frame.image_bgr if keep_images else None)
                    yield frame.index, frame.image_bgr

        with contextlib.closing(frames):
            analysed: Iterable[FrameAnalysis]
            if mode is RunningMode.VIDEO:
                analysed = pipeline.run(wanted())
            else:
                analysed = (pipeline.process_image(image, index) for index, image in wanted())
            for analysis in link_first_sightings(analysed):
                index = analysis.frame_index or 0
                timestamp_ms, image = pending.pop(index)
                record = FrameRecord(source.name, index, timestamp_ms, analysis.width, analysis.height, analysis.faces, analysis.detection)
                yield record, image


def nominal_fps(source: Source) -> float:
    """The frame rate the tracker counts a source's frames at: a video file's, from its header; a camera's or
    a stream's, nominally (live, frames are dropped when the analysis is behind)."""
    return video_fps(source) if source.kind is SourceKind.VIDEO else LIVE_NOMINAL_FPS


def analyze(
    *sources: str | Path,
    every_n_frames: int = 1,
    summary: bool = False,
    model_server: str | None = None,
    settings: Settings | None = None,
) -> Iterator[Record]:
    """Records for every source in order: a FrameRecord per analysed frame or image (faces of videos, cameras
    and streams carry track ids), and with ``summary`` a PersonRecord per person after each tracked source and a
    SourceSummary after every source (the detector, the smallest face looked for, frames with faces).
    A source that cannot be analysed raises SourceError when it is reached."""
    with Analyzer(model_server, settings) as analyzer:
        for argument in sources:
            for source in expand(str(argument)):
                yield from analyzer.run(source, every_n_frames, summary)
