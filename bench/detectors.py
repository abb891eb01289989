"""Face-detection benchmark: recall by face size, false faces and time per frame, per detector and running mode.

    python -m bench.detectors                          # every candidate (YuNet when ../shared has its file)
    python -m bench.detectors --only centerface --json /tmp/detectors.json

Data (bench/faces.py): (a) the hand-annotated real media of ../shared — 128 readable faces in pictures and sampled
frames of the clips, 24 of them under 20 px high, plus pictures and frames without any face; (b) a scale sweep:
real pictures of one person scaled so the face is 16-256 px high, six to a real no-face scene of 1280x720.

Every candidate is one network behind the product's FaceSearch (emotion_detector/detection/search.py) with the
product's options: faces from 20 px high, each network at the scale its measured face range asks for, in tiles
where its input is fixed or the picture large. "before" is what the product did until this benchmark: BlazeFace
short range on the whole frame (letterboxed to 128 px), faces from 20 px in a copy of at most 480 px.

Modes, as the product runs them:
- image: one whole-picture search per picture (the API, /images, the CLI on pictures);
- video: every frame of each annotated clip in order, a search every second of video and around the known faces
  in between (video jobs, the CLI on files); recall on the annotated frames;
- live: the same clips at their frame rate, searches at most once a second (run in line here, so the figures
  repeat; the product runs them in the background) — the per-frame cost is that of the frames between searches.

Times are the calling thread's wall clock on one ONNX Runtime thread, detectors taking turns picture by picture
so that other load falls on all alike. Needs ../shared (media and, for YuNet, its file), like the tests.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from bench.faces import BUCKETS, Item, Tally, annotated, image_of, scale_sweep, sweep_scenes, video_fps, video_frames
from bench.machine import cpu_description
from emotion_detector.detection import DETECTORS, DetectorOptions, FaceSearch, LiveDetection, SearchOptions, VideoDetection
from emotion_detector.detection.base import nose_along_eyes
from emotion_detector.settings import DEFAULT_MODEL_DIR
from tests.conftest import YUNET

SEARCH_EVERY_S = 1.0


class Before:
    """The product until this benchmark: BlazeFace short range on the whole frame, 20-px faces in a <= 480-px copy."""

    def __init__(self, options: DetectorOptions):
        from emotion_detector.detection.blazeface import SHORT_RANGE, BlazeFaceDetector

        self.detector = BlazeFaceDetector(options, SHORT_RANGE)

    def find(self, image: np.ndarray) -> sv.Detections:
        found = self.detector.detect(image)
        copy_scale = min(1.0, 480 / max(image.shape[:2]))
        sides = np.minimum(found.xyxy[:, 2] - found.xyxy[:, 0], found.xyxy[:, 3] - found.xyxy[:, 1]) * copy_scale
        frontal = np.abs(nose_along_eyes(found.data["landmarks"]) - 0.5) <= 0.8
        return found[(sides >= 20) & frontal]  # type: ignore[return-value]


def candidates(cache_dir: Path, only: list[str] | None) -> dict[str, Callable[[], FaceSearch | Before]]:
    options = DetectorOptions(cache_dir=cache_dir, yunet_path=YUNET)
    names = [name for name in DETECTORS if name != "yunet" or YUNET.is_file()]
    made: dict[str, Callable[[], FaceSearch | Before]] = {
        name: (lambda name=name: FaceSearch(DETECTORS[name](options), SearchOptions())) for name in names
    }
    made["before (blazeface, whole frame)"] = lambda: Before(options)
    return {name: make for name, make in made.items() if not only or name in only}


@dataclass
class Timing:
    ms: list[float] = field(default_factory=list)

    def timed(self, work: Callable[[], sv.Detections]) -> sv.Detections:
        started = time.perf_counter()
        found = work()
        self.ms.append((time.perf_counter() - started) * 1000)
        return found

    def summary(self) -> dict:
        if not self.ms:
            return {}
        return {
            "n": len(self.ms),
            "p50_ms": round(float(np.percentile(self.ms, 50)), 1),
            "p99_ms": round(float(np.percentile(self.ms, 99)), 1),
        }


def image_mode(search: FaceSearch | Before, items: tuple[Item, ...]) -> tuple[Tally, Tally, Timing]:
    """Annotated pictures and frames one by one, then the scale sweep and its bare scenes; time per 640x360 frame."""
    annotated_tally, sweep_tally, timing = Tally(), Tally(), Timing()
    for item in items:
        annotated_tally.add(search.find(image_of(item)).xyxy, item.faces_xyxy, item.ignore_xyxy)
    for picture in scale_sweep():
        sweep_tally.add(search.find(picture.image).xyxy, picture.faces_xyxy, np.zeros((0, 4)))
    for scene in sweep_scenes():
        sweep_tally.add(search.find(scene).xyxy, np.zeros((0, 4)), np.zeros((0, 4)))
    for frame in video_frames("videos/single_face.mp4")[:24]:
        timing.timed(lambda frame=frame: search.find(frame))
    return annotated_tally, sweep_tally, timing


def stream_mode(search: FaceSearch, items: tuple[Item, ...], live: bool) -> tuple[Tally, Timing, Timing]:
    """Each annotated clip's every frame in order; recall on its annotated frames. Times: frames that only looked
    around known faces, and frames that searched the whole picture."""
    tally, between, searching = Tally(), Timing(), Timing()
    for source in sorted({item.source for item in items if item.is_video}):
        fps = video_fps(source)
        wanted = {item.frame: item for item in items if item.source == source}
        clock = [0.0]
        schedule: VideoDetection | LiveDetection = (
            LiveDetection(search, SEARCH_EVERY_S, background=None, clock=lambda clock=clock: clock[0])
            if live
            else VideoDetection(search, max(1, round(SEARCH_EVERY_S * fps)))
        )
        for index, frame in enumerate(video_frames(source)):
            clock[0] = index / fps
            started = time.perf_counter()
            found = schedule.detect(frame)
            (searching if schedule.searched else between).ms.append((time.perf_counter() - started) * 1000)
            item = wanted.get(index)
            if item is not None:
                tally.add(found.xyxy, item.faces_xyxy, item.ignore_xyxy)
    return tally, between, searching


def fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="candidate names (default: all)")
    # Per user, not a fixed name in the shared /tmp, where another user could plant a graph first.
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_MODEL_DIR.parent / "bench-cache", help="detectors' ONNX graphs")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    machine = cpu_description()
    print(f"machine: {machine}", flush=True)
    items = annotated()
    results: dict = {"machine": machine, "candidates": {}}
    for name, make in candidates(args.cache_dir, args.only).items():
        search = make()
        annotated_tally, sweep_tally, image_timing = image_mode(search, items)
        row: dict = {
            "image": {
                "annotated_recall_by_bucket": [annotated_tally.recall(b) for b in range(len(BUCKETS))],
                "annotated_faces_by_bucket": [annotated_tally.total.get(b, 0) for b in range(len(BUCKETS))],
                "annotated_false_faces": annotated_tally.false_faces,
                "sweep_recall_by_bucket": [sweep_tally.recall(b) for b in range(len(BUCKETS))],
                "sweep_false_faces": sweep_tally.false_faces,
                "time_640x360": image_timing.summary(),
            }
        }
        if isinstance(search, FaceSearch):
            for mode in ("video", "live"):
                tally, between, searching = stream_mode(search, items, live=mode == "live")
                row[mode] = {
                    "annotated_recall_by_bucket": [tally.recall(b) for b in range(len(BUCKETS))],
                    "false_faces": tally.false_faces,
                    "time_between_searches": between.summary(),
                    "time_searching": searching.summary(),
                    "ms_per_frame_mean": round(float(np.mean(between.ms + searching.ms)), 2),
                }
        results["candidates"][name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)

    print(f"\nmachine: {machine}")
    buckets = " | ".join(f"{low}–{high if high < 100_000 else ''} px" for low, high in BUCKETS)
    print(f"\nimage mode — recall by face height on the annotated media ({buckets}) and on the scale sweep; false faces")
    print(
        "| detector | annotated: "
        + buckets
        + " | sweep: "
        + buckets
        + " | false faces (annotated + sweep) | ms per 640x360 frame p50 / p99 |"
    )
    print("|---" * (3 + 2 * len(BUCKETS)) + "|")
    for name, row in results["candidates"].items():
        image = row["image"]
        print(
            f"| {name} | "
            + " | ".join(fmt(r) for r in image["annotated_recall_by_bucket"])
            + " | "
            + " | ".join(fmt(r) for r in image["sweep_recall_by_bucket"])
            + f" | {image['annotated_false_faces']} + {image['sweep_false_faces']} "
            + f"| {image['time_640x360'].get('p50_ms')} / {image['time_640x360'].get('p99_ms')} |"
        )
    print("\nvideo and live modes — recall by face height on the annotated clip frames; ms per frame (between searches / searching)")
    print("| detector | mode | " + buckets + " | false faces | ms per frame, mean | between searches p50 / p99 | a search p50 |")
    print("|---" * (6 + len(BUCKETS)) + "|")
    for name, row in results["candidates"].items():
        for mode in ("video", "live"):
            if mode not in row:
                continue
            stream = row[mode]
            print(
                f"| {name} | {mode} | "
                + " | ".join(fmt(r) for r in stream["annotated_recall_by_bucket"])
                + f" | {stream['false_faces']} | {stream['ms_per_frame_mean']} | {stream['time_between_searches'].get('p50_ms')} / "
                f"{stream['time_between_searches'].get('p99_ms')} | {stream['time_searching'].get('p50_ms')} |"
            )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
