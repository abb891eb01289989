"""Face detector benchmark: time per 640x360 frame, and faces found / false faces on the real media in ../shared.

    python -m bench.detectors                      # Haar, YuNet (ONNX Runtime), BlazeFace short and full range
    python -m bench.detectors --repeats 10 --json /tmp/detectors.json

It also times BlazeFace's network alone on ONNX Runtime (our translation) and, when ``ai-edge-litert`` is
installed (it is not a dependency: pip install ai-edge-litert), on LiteRT with the original .tflite file.

Every detector runs with the product's defaults (DetectorOptions(): score >= 0.7, near-profile faces skipped,
YuNet and Haar on a copy of at most 480 px, one ONNX Runtime thread), on one thread, one after the other.

"Found" is measured against reference faces: YuNet at the frame's full resolution with lenient settings
(score >= 0.5, faces down to 5 px, profiles kept). Its counts match what a person sees in these clips (checked
by eye on saved frames): single_face 1, head-pose-face-detection-female-and-male 2, classroom 4 (no clip
has exactly three people), no_face and people-detection 0. A detection finds a reference face when their boxes
overlap with IoU >= 0.3 (one detection per face, greedily by IoU): BlazeFace's square boxes start at the
eyebrows, YuNet's at the hairline, so the same face gives IoU 0.6-0.8, while neighbouring faces give 0.
Detections matching no reference face are false faces.

Needs ../shared (media and the YuNet file), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from emotion_detector.detection import DetectorOptions, FaceDetector, HaarDetector, YuNetDetector
from tests.conftest import SHARED, YUNET

VIDEOS = SHARED / "media" / "videos"
MATCH_IOU = 0.3


def cpu() -> dict:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines() if line.startswith("Model name")), "unknown")
    flags = next((line.split(":", 1)[1].split() for line in lscpu.splitlines() if line.startswith("Flags")), [])
    return {"model": model, "avx2": "avx2" in flags, "avx512_vnni": "avx512_vnni" in flags, "usable_cpus": len(os.sched_getaffinity(0))}


def frames(name: str) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(VIDEOS / name))
    out = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return out
        out.append(frame)


def candidates(cache_dir: Path | None) -> dict[str, Callable[[], FaceDetector]]:
    from emotion_detector.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector

    options = DetectorOptions(cache_dir=cache_dir)
    return {
        "haar": lambda: HaarDetector(options),
        "yunet (onnxruntime)": lambda: YuNetDetector(YUNET, options),
        "blazeface (short range)": lambda: BlazeFaceDetector(options, SHORT_RANGE),
        "blazeface_full_range": lambda: BlazeFaceDetector(options, FULL_RANGE),
    }


def reference_faces(clip: list[np.ndarray]) -> list[np.ndarray]:
    lenient = DetectorOptions(max_input_side=10_000, score_threshold=0.5, min_face_side_px=5, max_nose_outside_eyes=10.0)
    reference = YuNetDetector(YUNET, lenient)
    return [reference.detect(frame).xyxy for frame in clip]


def matched(found_xyxy: np.ndarray, reference_xyxy: np.ndarray) -> int:
    """How many reference faces a detection finds (IoU >= MATCH_IOU, each detection used once)."""
    if len(found_xyxy) == 0 or len(reference_xyxy) == 0:
        return 0
    iou = sv.box_iou_batch(reference_xyxy, found_xyxy)
    count = 0
    while iou.size and iou.max() >= MATCH_IOU:
        r, f = np.unravel_index(int(np.argmax(iou)), iou.shape)
        iou[r, :], iou[:, f] = -1, -1
        count += 1
    return count


def timing_ms(detectors: dict[str, FaceDetector], clip: list[np.ndarray], repeats: int) -> dict[str, dict]:
    """Per-frame time of each detector, taking turns frame by frame so that other load on the machine falls
    on all of them alike: wall-clock time, and the calling thread's CPU time, which other processes competing
    for the cores hardly change (ONNX Runtime with one intra-op thread computes on the calling thread)."""
    for detector in detectors.values():
        for frame in clip[:5]:
            detector.detect(frame)  # warm up
    wall: dict[str, list[float]] = {name: [] for name in detectors}
    cpu_ms: dict[str, list[float]] = {name: [] for name in detectors}
    for _ in range(repeats):
        for frame in clip:
            for name, detector in detectors.items():
                start, start_cpu = time.perf_counter(), time.thread_time()
                detector.detect(frame)
                wall[name].append((time.perf_counter() - start) * 1000)
                cpu_ms[name].append((time.thread_time() - start_cpu) * 1000)
    return {
        name: {
            "p50_ms": round(float(np.percentile(wall[name], 50)), 2),
            "p99_ms": round(float(np.percentile(wall[name], 99)), 2),
            "cpu_p50_ms": round(float(np.percentile(cpu_ms[name], 50)), 2),
            "cpu_p99_ms": round(float(np.percentile(cpu_ms[name], 99)), 2),
        }
        for name in detectors
    }


def recall(detector: FaceDetector, clip: list[np.ndarray], reference: list[np.ndarray]) -> dict:
    found = [detector.detect(frame).xyxy for frame in clip]
    hits = np.array([matched(f, r) for f, r in zip(found, reference, strict=True)])
    expected = np.array([len(r) for r in reference])
    return {
        "all_found_pct": round(100 * float(np.mean(hits == expected)), 1),
        "all_but_one_found_pct": round(100 * float(np.mean(hits >= expected - 1)), 1),
        "faces_found_pct": round(100 * int(hits.sum()) / max(int(expected.sum()), 1), 1),
        "false_faces": int(sum(len(f) for f in found) - hits.sum()),
    }


def network_runtimes_ms(repeats: int = 300) -> dict[str, dict]:
    """BlazeFace's network alone, one thread, on a real letterboxed frame: ONNX Runtime vs LiteRT, interleaved."""
    import onnxruntime as ort

    from emotion_detector.blazeface import FULL_RANGE, SHORT_RANGE, _letterbox, converted_model, wheel_model_path

    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        Interpreter = None  # noqa: N806 - the class, when installed
    frame = frames("single_face.mp4")[0]
    out = {}
    for variant in (SHORT_RANGE, FULL_RANGE):
        tflite_path = wheel_model_path(variant)
        blob = _letterbox(frame, variant.input_side_px)[0][None].astype(np.float32) * (2 / 255) - 1
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = 1, 1
        model = converted_model(tflite_path, None)
        session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        runs: dict[str, Callable[[], object]] = {"onnxruntime": lambda s=session, b=blob: s.run(None, {s.get_inputs()[0].name: b})}
        if Interpreter is not None:
            interpreter = Interpreter(model_path=str(tflite_path), num_threads=1)
            interpreter.allocate_tensors()
            index = interpreter.get_input_details()[0]["index"]

            def litert(i=interpreter, b=blob, index=index) -> object:
                i.set_tensor(index, b)
                i.invoke()
                return [i.get_tensor(o["index"]) for o in i.get_output_details()]

            runs["litert"] = litert
        spent: dict[str, list[float]] = {name: [] for name in runs}
        for step in range(repeats + 20):
            for name, run in runs.items():
                start = time.perf_counter()
                run()
                if step >= 20:  # warm-up
                    spent[name].append((time.perf_counter() - start) * 1000)
        for name, ms in spent.items():
            out[f"{variant.name} on {name}"] = {f"p{q}_ms": round(float(np.percentile(ms, q)), 2) for q in (50, 99)}
    return out


POSITIVE_CLIPS = ("single_face.mp4", "head-pose-face-detection-female-and-male.mp4", "classroom.mp4")
NEGATIVE_CLIPS = ("no_face.mp4", "people-detection.mp4")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="passes over single_face.mp4's 72 frames for the timing")
    parser.add_argument("--only", nargs="*", help="detector names to run (default: all)")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/emotion-detector-bench-cache"), help="BlazeFace's ONNX translation")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    results: dict = {"cpu": cpu(), "detectors": {}}
    print(f"CPU: {results['cpu']}", flush=True)
    clips = {name: frames(name) for name in (*POSITIVE_CLIPS, *NEGATIVE_CLIPS)}
    references = {name: reference_faces(clips[name]) for name in POSITIVE_CLIPS}
    no_face_image = cv2.imread(str(SHARED / "media" / "images" / "BWPictureHuman.jpg"))
    detectors = {name: make() for name, make in candidates(args.cache_dir).items() if not args.only or name in args.only}

    results["network_only"] = network_runtimes_ms()
    print(f"BlazeFace network only: {json.dumps(results['network_only'])}", flush=True)
    timings = timing_ms(detectors, clips["single_face.mp4"], args.repeats)
    for name, detector in detectors.items():
        row: dict = {"time_640x360": timings[name]}
        for clip in POSITIVE_CLIPS:
            row[clip] = recall(detector, clips[clip], references[clip])
        for clip in NEGATIVE_CLIPS:
            row[f"{clip} faces"] = int(sum(len(detector.detect(frame)) for frame in clips[clip]))
        row["BWPictureHuman.jpg faces"] = len(detector.detect(no_face_image))
        results["detectors"][name] = row
        print(f"{name}: {json.dumps(row)}", flush=True)

    load_1min = os.getloadavg()[0]
    print(f"\nCPU: {results['cpu']['model']}, avx512_vnni {'yes' if results['cpu']['avx512_vnni'] else 'no'}; load average {load_1min:.1f}")
    header = (
        "| detector | ms/frame p50 | p99 | CPU ms p50 | p99 | single_face: face found | female-and-male: both | classroom: all 4 "
        "| ≥ 3 of 4 | false faces in those clips | faces on no_face.mp4 | people-detection.mp4 | BWPictureHuman.jpg |"
    )
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for name, row in results["detectors"].items():
        false_faces = sum(row[clip]["false_faces"] for clip in POSITIVE_CLIPS)
        print(
            f"| {name} | {row['time_640x360']['p50_ms']} | {row['time_640x360']['p99_ms']} | {row['time_640x360']['cpu_p50_ms']} "
            f"| {row['time_640x360']['cpu_p99_ms']} | {row['single_face.mp4']['all_found_pct']} % "
            f"| {row['head-pose-face-detection-female-and-male.mp4']['all_found_pct']} % | {row['classroom.mp4']['all_found_pct']} % "
            f"| {row['classroom.mp4']['all_but_one_found_pct']} % | {false_faces} | {row['no_face.mp4 faces']} "
            f"| {row['people-detection.mp4 faces']} | {row['BWPictureHuman.jpg faces']} |"
        )
    for name, ms in results["network_only"].items():
        print(f"network only, {name}: p50 {ms['p50_ms']} ms, p99 {ms['p99_ms']} ms")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
