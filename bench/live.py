"""Live-path benchmark, on the real webcam-style clip ``single_face.mp4`` (640x360, one face), played in order.

1. Server-side time per frame, decode to result: the web app's own live-mode FramePipeline (default detector, tracking,
   smoothing) in this process against a real model server, fed the clip's frames in order (looping).
2. One webcam of 640x480 with three people, as the live page streams it (at most 15 frames/s, one in flight):
   results per second and faces per result. The frames are real clips side by side: the two-person head-pose
   clip scaled to 640x360 above single_face.mp4 at 213x120 (faces about 90, 90 and 45 px high).
3. N websocket clients (default 20) each streaming the clip at 5 frames/s for 30 s to the real web app
   (gunicorn + gevent) and model server: each sends the frame its camera shows at that moment, like the
   browser page, with at most one frame in flight; a tick that finds its previous frame unanswered is skipped
   (back-pressure). Clients start at random phases of the frame interval, as independent users do;
   ``--lockstep`` starts them all at once.

    python -m bench.live                          # both parts; starts its own servers on free ports
    python -m bench.live --clients 20 --fps 5 --seconds 30 --frames 500 --detector yunet

Prints the CPU it ran on: figures count only with it. Needs ../shared (media), like the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import requests
import websockets

from bench.machine import cpu_description
from tests.conftest import ROOT, SHARED, YUNET, free_port, wait_until

CLIP = SHARED / "media" / "videos" / "single_face.mp4"
TWO_PEOPLE = SHARED / "media" / "videos" / "head-pose-face-detection-female-and-male.mp4"
PAGE_MAX_FPS = 15.0  # the live page's shortest send interval (static/live.js: 66 ms)


def decoded(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            return frames, fps
        frames.append(frame)


def as_sent(frames: list[np.ndarray]) -> list[bytes]:
    """Frames as the browser sends them: JPEG, quality 0.8."""
    return [cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes() for frame in frames]


def clip_frames() -> tuple[list[bytes], float]:
    """The clip's frames as the browser sends them, and its frame rate."""
    frames, fps = decoded(CLIP)
    return as_sent(frames), fps


def three_people_frames() -> tuple[list[bytes], float]:
    """640x480 frames with three real faces: the two-person clip (640x360) above the webcam clip (213x120)."""
    two, fps = decoded(TWO_PEOPLE)
    one, _ = decoded(CLIP)
    frames = []
    for index, top in enumerate(two):
        canvas = np.zeros((480, 640, 3), np.uint8)
        canvas[:360] = cv2.resize(top, (640, 360), interpolation=cv2.INTER_LINEAR)
        canvas[360:480, 213:426] = cv2.resize(one[index % len(one)], (213, 120), interpolation=cv2.INTER_AREA)
        frames.append(canvas)
    return as_sent(frames), fps


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


def start(args: list[str], env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(  # nosec B603  # a fixed argument list, no shell
        [sys.executable, *args], cwd=ROOT, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def per_frame(model_target: str, frames: int, **overrides) -> dict:
    from emotion_detector.detection import DetectorOptions, create_detector
    from emotion_detector.model_client import ModelServerClient
    from emotion_detector.pipeline import FaceAnalyzer, RunningMode
    from emotion_detector.settings import Settings

    settings = Settings(model_server=model_target, yunet_path=YUNET, **overrides)
    detector = create_detector(DetectorOptions.from_settings(settings))
    session = FaceAnalyzer(detector, ModelServerClient(model_target), settings).pipeline(RunningMode.LIVE)
    clip, _ = clip_frames()
    for jpeg in clip[:30]:
        session.process(jpeg)
    totals, stages, found = [], {}, 0
    for number in range(frames):
        started = time.perf_counter()
        analysis = session.process(clip[number % len(clip)])
        totals.append((time.perf_counter() - started) * 1000)
        found += len(analysis.faces) == 1
        for stage, ms in analysis.timing_ms.items():
            stages.setdefault(stage, []).append(ms)
    return {
        "frame": "640x360 JPEG of single_face.mp4, in order",
        "detector": detector.name,
        "age_gender_every_n_frames": settings.age_gender_every_n_frames,
        "frames": frames,
        "frames_with_the_face": found,
        "p50_ms": percentile(totals, 50),
        "p99_ms": percentile(totals, 99),
        "stage_p50_ms": {stage: percentile(ms, 50) for stage, ms in stages.items() if stage != "total"},
    }


async def one_client(url: str, clip: list[bytes], clip_fps: float, fps: float, seconds: float, phase_s: float = 0.0) -> dict:
    stats = {"offered": 0, "sent": 0, "answered": 0, "skipped_backpressure": 0, "dropped_by_server": 0, "errors": 0}
    stats |= {"rtt_ms": [], "server_ms": [], "faces": []}
    async with websockets.connect(url, max_size=None) as ws:
        await ws.recv()  # hello
        in_flight: dict[int, float] = {}

        async def reader() -> None:
            async for message in ws:
                answer = json.loads(message)
                if answer["type"] == "error":
                    stats["errors"] += 1
                elif answer["type"] == "result":
                    stats["answered"] += 1
                    stats["dropped_by_server"] += answer.get("dropped", 0)
                    stats["server_ms"].append(answer["timing_ms"])
                    stats["faces"].append(len(answer["faces"]))
                sent_at = in_flight.pop(answer.get("frame"), None)
                if sent_at is not None:
                    stats["rtt_ms"].append((time.perf_counter() - sent_at) * 1000)
                in_flight.clear()  # older frames were dropped by the server

        reading = asyncio.create_task(reader())
        await asyncio.sleep(phase_s)
        interval, started = 1 / fps, time.perf_counter()
        tick = 0
        while time.perf_counter() - started < seconds:
            tick += 1
            stats["offered"] += 1
            if in_flight:
                stats["skipped_backpressure"] += 1
            else:
                stats["sent"] += 1
                in_flight[stats["sent"]] = time.perf_counter()
                await ws.send(clip[int((time.perf_counter() - started) * clip_fps) % len(clip)])  # what the camera shows now
            await asyncio.sleep(max(0.0, started + tick * interval - time.perf_counter()))
        deadline = time.perf_counter() + 5
        while in_flight and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        reading.cancel()
    return stats


async def page_like_stream(url: str, seconds: float) -> dict:
    """One camera of three people at the live page's pace: results per second, faces per result, round trips."""
    clip, clip_fps = three_people_frames()
    stats = await one_client(url, clip, clip_fps, PAGE_MAX_FPS, seconds)
    return {
        "frame": "640x480 JPEG, three real faces (two-person clip above the webcam clip)",
        "seconds": seconds,
        "results_per_s": round(stats["answered"] / seconds, 1),
        "faces_per_result": {str(n): stats["faces"].count(n) for n in sorted(set(stats["faces"]))},
        "rtt_p50_ms": percentile(stats["rtt_ms"], 50),
        "rtt_p99_ms": percentile(stats["rtt_ms"], 99),
        "server_total_p50_ms": percentile([t["total"] for t in stats["server_ms"]], 50),
        "errors": stats["errors"],
    }


async def many_clients(url: str, clients: int, fps: float, seconds: float, lockstep: bool = False) -> dict:
    """Independent users' cameras tick at unrelated moments: each client starts at a random phase of the
    frame interval (seeded). ``lockstep`` starts them together, so every tick is a burst of ``clients`` frames."""
    clip, clip_fps = clip_frames()
    phases = [0.0] * clients if lockstep else list(np.random.default_rng(0).uniform(0, 1 / fps, clients))
    results = await asyncio.gather(*(one_client(url, clip, clip_fps, fps, seconds, phase) for phase in phases))
    rtts = [r for result in results for r in result["rtt_ms"]]
    # The server's own stage times under load: a round trip much longer than the server's total is time
    # spent waiting (event loop, native threads, network), not working.
    server_stages: dict[str, list[float]] = {}
    for result in results:
        for timing in result["server_ms"]:
            for stage, ms in timing.items():
                server_stages.setdefault(stage, []).append(ms)
    totals = {
        key: sum(result[key] for result in results)
        for key in ("offered", "sent", "answered", "skipped_backpressure", "dropped_by_server", "errors")
    }
    per_client = [result["answered"] for result in results]
    return {
        "clients": clients,
        "start": "lockstep" if lockstep else "random phase",
        "fps_per_client": fps,
        "seconds": seconds,
        **totals,
        "answered_per_s": round(totals["answered"] / seconds, 1),
        "rtt_p50_ms": percentile(rtts, 50),
        "rtt_p99_ms": percentile(rtts, 99),
        "answered_per_client_min_max": [min(per_client), max(per_client)],
        "server_stage_p50_p99_ms": {stage: [percentile(ms, 50), percentile(ms, 99)] for stage, ms in server_stages.items()},
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=500)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--detector", default="auto", help="EMOTION_DETECTOR for both parts (default: the product's default)")
    parser.add_argument("--lockstep", action="store_true", help="all clients tick at the same moments (bursts)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--server-args", nargs=argparse.REMAINDER, default=[], help="extra flags for the started model server")
    args = parser.parse_args(argv)
    machine = cpu_description()
    print(f"machine: {machine}", flush=True)

    grpc_port, rest_port, web_port = free_port(), free_port(), free_port()
    model = start(["-m", "serving", "--host", "127.0.0.1", "--port", str(grpc_port), "--rest_api_port", str(rest_port), *args.server_args])
    web = start(
        ["-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
        {
            "PORT": str(web_port),
            "HOST": "127.0.0.1",
            "EMOTION_MODEL_SERVER": f"127.0.0.1:{grpc_port}",
            "EMOTION_YUNET_PATH": str(YUNET),
            "EMOTION_DETECTOR": args.detector,
        },
    )
    results: dict = {"machine": machine}
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{rest_port}/readyz", timeout=1).ok, 60, "model server", model)
        wait_until(lambda: requests.get(f"http://127.0.0.1:{web_port}/api/v1/health", timeout=1).ok, 60, "web app", web)
        target = f"127.0.0.1:{grpc_port}"
        results["per_frame"] = per_frame(target, args.frames, detector=args.detector)
        print(json.dumps(results["per_frame"]), flush=True)
        # The same with age and gender on every frame: the cost of a frame that measures them.
        results["per_frame_all_models"] = per_frame(target, args.frames, detector=args.detector, age_gender_every_n_frames=1)
        print(json.dumps(results["per_frame_all_models"]), flush=True)
        results["three_people"] = asyncio.run(page_like_stream(f"ws://127.0.0.1:{web_port}/ws/live", min(args.seconds, 20.0)))
        print(json.dumps(results["three_people"]), flush=True)
        results["websocket_load"] = asyncio.run(
            many_clients(f"ws://127.0.0.1:{web_port}/ws/live", args.clients, args.fps, args.seconds, args.lockstep)
        )
        print(json.dumps(results["websocket_load"]), flush=True)
    finally:
        for process in (web, model):
            process.terminate()
            process.wait()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    load = results["websocket_load"]
    print(f"\nmachine: {machine}")
    for key, what in (("per_frame", "settings as shipped"), ("per_frame_all_models", "age and gender on every frame too")):
        per = results[key]
        print(
            f"per frame (server side, decode to result; {per['detector']}, {what}): p50 {per['p50_ms']} ms, p99 {per['p99_ms']} ms; "
            f"stages p50 {per['stage_p50_ms']}; face found in {per['frames_with_the_face']}/{per['frames']} frames"
        )
    three = results["three_people"]
    print(
        f"one 640x480 camera, three people, at the page's pace (<= {PAGE_MAX_FPS:g}/s): {three['results_per_s']} results/s, "
        f"faces per result {three['faces_per_result']}, round trip p50 {three['rtt_p50_ms']} ms, p99 {three['rtt_p99_ms']} ms"
    )
    print(
        f"{load['clients']} clients ({load['start']}) x {load['fps_per_client']} frames/s x {load['seconds']} s: "
        f"offered {load['offered']}, sent {load['sent']}, answered {load['answered']} ({load['answered_per_s']}/s), "
        f"skipped by back-pressure {load['skipped_backpressure']}, dropped by server {load['dropped_by_server']}, "
        f"errors {load['errors']}; round trip p50 {load['rtt_p50_ms']} ms, p99 {load['rtt_p99_ms']} ms"
    )


if __name__ == "__main__":
    main()
