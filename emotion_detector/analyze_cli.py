"""``emotion-detector analyze SOURCE...`` (DESIGN.md §2, "CLI"): records to stdout or a file as they are
made, progress on stderr when it is a terminal, exit 0 on success, 2 when a source was bad input (the
others still run and their records stand), 1 on anything else; Ctrl-C stops cleanly with what was written."""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

from emotion_detector.labels import EMOTIONS
from emotion_detector.records import FrameRecord, Record

if TYPE_CHECKING:  # the models, OpenCV and FFmpeg load when a command runs, not for --help
    import numpy as np

    from emotion_detector.analyze_api import Analyzer
    from emotion_detector.sources import Source

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130
CSV_COLUMNS = [
    "source",
    "frame",
    "timestamp_ms",
    "id",
    "x1",
    "y1",
    "x2",
    "y2",
    "score",
    "emotion",
    "emotion_confidence",
    *[f"p_{label}" for label in EMOTIONS],
    "age_years",
    "gender",
    "gender_confidence",
]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "analyze",
        help="analyse images, folders, videos, cameras and streams; one record per frame",
        description="SOURCE: an image, a directory (recursive), a video file, a camera index (0), an rtsp:// or http(s):// "
        "stream, or - (one image on stdin). Models run in this process unless --model-server is given.",
    )
    parser.add_argument("sources", nargs="+", metavar="SOURCE")
    parser.add_argument("--format", choices=("jsonl", "csv", "json"), default="jsonl", help="jsonl (default): one JSON object per line")
    parser.add_argument("--output", "-o", type=Path, help="write here instead of stdout")
    parser.add_argument(
        "--every", type=positive_int, default=1, metavar="N", help="analyse every N-th frame of videos, cameras and streams"
    )
    parser.add_argument(
        "--annotate", type=Path, metavar="OUT.mp4", help="write the video with the faces drawn (one video, camera or stream)"
    )
    parser.add_argument("--blur-faces", action="store_true", help="pixelate the faces in the --annotate video (the labels stay)")
    parser.add_argument(
        "--summary",
        action="store_true",
        help="add one record per person after each video, camera or stream, and one per source: the detector, the smallest "
        "face it looks for, and the frames with faces",
    )
    parser.add_argument("--model-server", metavar="HOST:PORT", help="use this model server (gRPC) instead of in-process models")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


class Writer(Protocol):
    def write(self, record: Record) -> None: ...
    def close(self) -> None: ...


class JsonLinesWriter:
    def __init__(self, out: IO[str]):
        self.out = out

    def write(self, record: Record) -> None:
        self.out.write(json.dumps(record.to_json()) + "\n")
        self.out.flush()  # a reader of a live source sees each frame as it is analysed

    def close(self) -> None:
        self.out.flush()


class JsonArrayWriter:
    """One JSON array, written element by element (nothing held back), closed on the way out, Ctrl-C too."""

    def __init__(self, out: IO[str]):
        self.out, self.count = out, 0
        self.out.write("[")

    def write(self, record: Record) -> None:
        self.out.write(("," if self.count else "") + "\n" + json.dumps(record.to_json()))
        self.count += 1

    def close(self) -> None:
        self.out.write("\n]\n")
        self.out.flush()


class CsvWriter:
    """One row per face per frame, with DESIGN.md §2's columns; a frame without a face has one row whose face
    columns are empty, so that every analysed image and frame shows in the table (no row would look like a file
    that was skipped)."""

    def __init__(self, out: IO[str]):
        self.out = out
        self.writer = csv.writer(out)
        self.writer.writerow(CSV_COLUMNS)

    def write(self, record: Record) -> None:
        if not isinstance(record, FrameRecord):  # person records have no row in a CSV of faces
            return
        if not record.faces:
            self.writer.writerow([record.source, record.frame, record.timestamp_ms, *[""] * (len(CSV_COLUMNS) - 3)])
        for face in record.faces:
            face_json = face.to_json()
            emotion, gender = face_json["emotion"], face_json["gender"]
            self.writer.writerow(
                [
                    record.source,
                    record.frame,
                    record.timestamp_ms,
                    face_json.get("id", ""),
                    *face_json["box"],
                    face_json["score"],
                    emotion["label"],
                    emotion["confidence"],
                    *[emotion["probabilities"][label] for label in EMOTIONS],
                    face_json["age"]["years"],
                    gender["label"],
                    gender["confidence"],
                ]
            )
        self.out.flush()

    def close(self) -> None:
        self.out.flush()


WRITERS: dict[str, Callable[[IO[str]], Writer]] = {"jsonl": JsonLinesWriter, "json": JsonArrayWriter, "csv": CsvWriter}


class Progress:
    """Frames, faces, rate and (for files) ETA on stderr, only when it is a terminal."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self._bar: Any = None  # a tqdm bar while a source runs
        self._faces = 0

    def start(self, source: Source) -> None:
        if not self.enabled:
            return
        from tqdm import tqdm

        from emotion_detector.sources import SourceKind, video_frame_count

        total = video_frame_count(source) if source.kind is SourceKind.VIDEO else None
        self._bar = tqdm(total=total, desc=Path(source.name).name or source.name, unit="frame", file=sys.stderr, leave=True)
        self._faces = 0

    def update(self, record: Record) -> None:
        if self._bar is not None and isinstance(record, FrameRecord):
            self._faces += len(record.faces)
            self._bar.update(1)
            self._bar.set_postfix(faces=self._faces, refresh=False)

    def end(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def run(args: argparse.Namespace) -> int:
    try:
        return _run(args)
    except KeyboardInterrupt:  # outside the analysis loop (loading the models): nothing was written yet
        print("emotion-detector: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader went away (e.g. `| head`): stop quietly, like other filters
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


class DeferredInterrupt:
    """Ctrl-C as usual (KeyboardInterrupt), except between a record and its annotated frame: there it waits for
    both to be written, so the records and the annotated video always hold the same frames."""

    def __init__(self) -> None:
        self._writing = self._pending = False

    def __enter__(self) -> DeferredInterrupt:
        # Only the main thread may set a handler (a caller on another thread keeps Python's own).
        self._previous = signal.signal(signal.SIGINT, self._handle) if threading.current_thread() is threading.main_thread() else None
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)

    def _handle(self, _signum: int, _frame: object) -> None:
        if self._writing:
            self._pending = True
        else:
            raise KeyboardInterrupt

    @contextmanager
    def writing(self) -> Iterator[None]:
        self._writing = True
        try:
            yield
        finally:
            self._writing = False
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt


def _run(args: argparse.Namespace) -> int:
    from emotion_detector.analyze_api import Analyzer
    from emotion_detector.model_client import ModelServerError, ModelUnavailable
    from emotion_detector.schemas import no_faces_message
    from emotion_detector.sources import SourceError, expand

    # The imports (NumPy, SciPy, OpenCV, ONNX Runtime...) leave ~100,000 objects for the cyclic garbage collector,
    # and a full collection pending: ~40 ms in the first second of analysis. They live as long as this process,
    # so they are moved out of the collector's sight instead (once per process: tests call this many times).
    if not gc.get_freeze_count():
        gc.freeze()
    if args.summary and args.format == "csv":
        return _usage("--summary adds person records, which a CSV of faces has no columns for: use --format jsonl or json")
    sources: list[Source] = []
    bad_input = False
    for argument in args.sources:
        try:
            found = expand(argument)
        except SourceError as error:
            print(f"emotion-detector: {error}", file=sys.stderr)
            bad_input = True
            continue
        if not found:
            print(f"emotion-detector: {argument}: no images or videos in this directory", file=sys.stderr)
            bad_input = True
        sources += found
    if args.annotate and len([s for s in sources if s.kind.tracked]) != 1:
        return _usage("--annotate draws one video, camera or stream: give exactly one such source")
    progress = Progress(enabled=sys.stderr.isatty() and not args.quiet)
    with ExitStack() as stack:
        out = stack.enter_context(args.output.open("w", newline="")) if args.output else sys.stdout
        writer = WRITERS[args.format](out)
        stack.callback(writer.close)  # a JSON array is closed even after Ctrl-C
        try:
            analyzer = stack.enter_context(Analyzer(args.model_server))
        except Exception as error:  # models missing or a model server that cannot be reached
            print(f"emotion-detector: cannot load the models: {error}", file=sys.stderr)
            return EXIT_ERROR
        annotated = None
        if args.annotate:
            from emotion_detector.videos.render import AnnotatedVideoWriter

            annotated = AnnotatedVideoWriter(args.annotate, blur_faces=args.blur_faces)
            stack.callback(annotated.close)
        interrupt = stack.enter_context(DeferredInterrupt())
        try:
            for source in sources:
                progress.start(source)
                faces, detection = 0, None
                try:
                    for record, image in _records(analyzer, source, args, annotated is not None):
                        with interrupt.writing():
                            if annotated is not None and isinstance(record, FrameRecord) and image is not None:
                                annotated.write(image, record.faces, record.timestamp_ms)
                            writer.write(record)
                        progress.update(record)
                        if isinstance(record, FrameRecord):
                            faces, detection = faces + len(record.faces), record.detection or detection
                except SourceError as error:  # bad input: said in one line, and the next source runs
                    progress.end()
                    print(f"emotion-detector: {error}", file=sys.stderr)
                    bad_input = True
                progress.end()
                if detection is not None and not faces:  # an empty result says why, on stderr (stdout is data)
                    print(f"emotion-detector: {source.name}: {no_faces_message(detection.min_face_px)}", file=sys.stderr)
        except (ModelUnavailable, ModelServerError) as error:  # a model server that is down or went away
            progress.end()
            print(f"emotion-detector: {error}; the records written so far are complete", file=sys.stderr)
            return EXIT_ERROR
        except KeyboardInterrupt:
            progress.end()
            print("emotion-detector: interrupted; the records written so far are complete", file=sys.stderr)
            return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if bad_input else EXIT_OK


def _records(analyzer: Analyzer, source: Source, args: argparse.Namespace, with_images: bool) -> Iterator[tuple[Record, np.ndarray | None]]:
    """Each record, with its frame's picture where the annotated video needs it (else None)."""
    if not with_images or not source.kind.tracked:
        for record in analyzer.run(source, args.every, args.summary):
            yield record, None
        return
    yield from analyzer.run_with_images(source, args.every, args.summary)


def _usage(message: str) -> int:
    print(f"emotion-detector analyze: {message}", file=sys.stderr)
    return EXIT_BAD_INPUT
