"""``emotion-detector analyze`` speed and memory on real video, beside the `fer` package on the same files.

    python -m bench.cli                                   # single_face.mp4 and a one-minute clip (640x360)
    python -m bench.cli --long-minutes 15                 # also a 15-minute clip: peak RSS stays flat
    python -m bench.cli --fer-python /tmp/fer-venv/bin/python   # fer's Video.analyze on the same files
    python -m bench.cli --baseline /tmp/before                 # beside another checkout (e.g. a git worktree of
                                                               # the commit before a change), runs interleaved

Each file is analysed ``--repeat`` times (default 3) in two ways, each run a fresh process, every frame,
models in process:
- timed like fer's own benchmark script (bench/video.py): from loading the models to the last record, after
  the imports (``from emotion_detector import analyze``) — frames per second and × real time;
- the whole command, ``python -m emotion_detector analyze FILE --quiet -o /dev/null``, from process start to
  exit (interpreter, imports and models included), and its peak resident memory (from wait4).
fer lives in an environment of its own (see bench/video.py) and is run as often. Figures are the median run's,
with the fastest and slowest beside them: single runs on a shared 2-core VM differ by 20 % and more.
Prints the CPU it ran on: figures count only with it. Needs ../shared (media), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av

from bench.machine import cpu_description
from bench.video import SOURCE, fer_speed, looped_video
from tests.conftest import ROOT


def video_facts(path: Path) -> tuple[int, float, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.demux(stream) if _.size)
        return frames, float(container.duration / 1e6), f"{stream.codec_context.width}x{stream.codec_context.height}"


API_SCRIPT = """
import json, sys, time
from emotion_detector import analyze
started = time.perf_counter()
frames = sum(1 for record in analyze(sys.argv[1]))
print(json.dumps({"frames": frames, "wall_s": time.perf_counter() - started}))
"""


def timed_api_run(video: Path, frames: int, checkout: Path = ROOT) -> float:
    """Seconds from loading the models to the last record, in a fresh process (after its imports), with the code
    of ``checkout`` (its folder comes first on the path)."""
    timed = subprocess.run([sys.executable, "-c", API_SCRIPT, str(video)], cwd=checkout, capture_output=True, text=True, check=True)  # nosec B603  # a fixed argument list, no shell
    analysed = json.loads(timed.stdout.strip().splitlines()[-1])
    if analysed["frames"] != frames:
        raise SystemExit(f"{video.name}: {analysed['frames']} records for {frames} frames")
    return float(analysed["wall_s"])


def command_run(video: Path, checkout: Path = ROOT) -> tuple[float, float]:
    """The whole command, as a user runs it: its wall time and peak RSS in MB (from wait4, not a poll)."""
    command = [sys.executable, "-m", "emotion_detector", "analyze", str(video), "--quiet", "--output", os.devnull]
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=checkout, stderr=subprocess.PIPE)  # nosec B603  # a fixed argument list, no shell
    _, status, usage = os.wait4(process.pid, 0)
    command_s = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"analyze failed on {video.name}: {process.stderr.read().decode()[-500:]}")
    return command_s, usage.ru_maxrss / 1024


def spread(values: list[float]) -> dict:
    return {"median": round(statistics.median(values), 2), "min": round(min(values), 2), "max": round(max(values), 2)}


def analyze_runs(video: Path, repeat: int, checkouts: list[Path]) -> list[dict]:
    """``analyze_run`` for each checkout, their runs taking turns (a slow spell of the VM falls on all alike)."""
    walls: list[list[float]] = [[] for _ in checkouts]
    commands: list[list[tuple[float, float]]] = [[] for _ in checkouts]
    frames = video_facts(video)[0]
    for _ in range(repeat):
        for i, checkout in enumerate(checkouts):
            walls[i].append(timed_api_run(video, frames, checkout))
            commands[i].append(command_run(video, checkout))
    return [summarised(video, w, c) for w, c in zip(walls, commands, strict=True)]


def analyze_run(video: Path, repeat: int) -> dict:
    return analyze_runs(video, repeat, [ROOT])[0]


def summarised(video: Path, walls: list[float], commands: list[tuple[float, float]]) -> dict:
    frames, duration_s, size = video_facts(video)
    repeat = len(walls)
    wall_s = statistics.median(walls)
    command_s = statistics.median(seconds for seconds, _ in commands)
    return {
        "video": video.name,
        "size": size,
        "frames": frames,
        "duration_s": round(duration_s, 2),
        "runs": repeat,
        "wall_s": spread(walls),
        "frames_per_s": round(frames / wall_s, 1),
        "speed_x_realtime": round(duration_s / wall_s, 2),
        "command_wall_s": spread([seconds for seconds, _ in commands]),
        "command_speed_x_realtime": round(duration_s / command_s, 2),
        "peak_rss_mb": round(max(rss for _, rss in commands), 1),
    }


def fer_runs(video: Path, python: str, repeat: int, duration_s: float) -> dict | str:
    walls = []
    for _ in range(repeat):
        fer = fer_speed(video, python)["fer"]
        if not isinstance(fer, dict):
            return str(fer)  # "failed: ..."
        walls.append(float(fer["wall_s"]))
    return {"wall_s": spread(walls), "speed_x_realtime": round(duration_s / statistics.median(walls), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--long-minutes", type=float, default=0, help="also a clip this long (peak memory on long input)")
    parser.add_argument("--fer-python", help="a Python with `fer` and TensorFlow installed: measure fer's Video too")
    parser.add_argument("--repeat", type=int, default=3, help="runs per file and way of timing (the median is reported)")
    parser.add_argument("--baseline", type=Path, help="another checkout to time beside this one (same files, runs interleaved)")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    print(f"machine: {cpu_description()}")
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as scratch:
        # (video, whether it is the long clip: analysed once, for its memory, and not by fer)
        videos = [(SOURCE, False), (looped_video(Path(scratch) / "one-minute.mp4", 60.0), False)]
        if args.long_minutes:
            videos.append((looped_video(Path(scratch) / f"{args.long_minutes:g}-minutes.mp4", args.long_minutes * 60), True))
        for video, long_video in videos:
            if args.baseline and not long_video:
                result, before = analyze_runs(video, args.repeat, [ROOT, args.baseline])
                result["baseline"] = {"checkout": str(args.baseline), **before}
                result["times_baseline_speed"] = round(result["speed_x_realtime"] / before["speed_x_realtime"], 2)
            else:
                result = analyze_run(video, 1 if long_video else args.repeat)
            if args.fer_python and not long_video:
                fer = fer_runs(video, args.fer_python, args.repeat, result["duration_s"])
                result["fer"] = fer
                if isinstance(fer, dict):
                    result["times_faster_than_fer"] = round(result["speed_x_realtime"] / fer["speed_x_realtime"], 2)
            print(json.dumps(result))


if __name__ == "__main__":
    main()
