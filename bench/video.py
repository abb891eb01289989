"""Video-job benchmark: processing speed as a multiple of real time.

../shared/media/videos/single_face.mp4 (640x360, 30 fps, 2.4 s) is looped to one minute (1,800 frames) and
re-encoded as H.264; every frame is analysed. The job goes through the real path: upload into the
VideoService, the Celery queue, worker processes (one, then two), the model server, the annotated-video
render. Speed = video duration / (queued → done).

    python -m bench.video                        # 1 worker, then 2 workers; embedded SQLite + local queue
    python -m bench.video --workers 1 2 --backend production   # PostgreSQL + Redis on this machine
    python -m bench.video --fer-python /tmp/fer-venv/bin/python   # also the `fer` package's Video analysis
    python -m bench.video --baseline /tmp/before   # beside another checkout's workers (e.g. a git worktree of the
                                                   # commit before a change), same video and model server

fer needs TensorFlow, so it lives in an environment of its own, never in this project's requirements:
    python -m venv /tmp/fer-venv && /tmp/fer-venv/bin/pip install torch==2.13.0 fer==25.10.3 tensorflow-cpu \
        "opencv-contrib-python<5" "setuptools<81"
(fer pulls in torch: pinned to the CPU build, or pip fetches the CUDA one. OpenCV 5 no longer ships the Haar
cascade fer loads, and fer still imports pkg_resources.)

Needs ../shared (media and the YuNet file), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from fractions import Fraction
from pathlib import Path

import av
import requests

from tests.conftest import ROOT, SHARED, YUNET, free_port, wait_until

SOURCE = SHARED / "media" / "videos" / "single_face.mp4"


def looped_video(target: Path, seconds: float) -> Path:
    """The source looped until ``seconds`` long, as an H.264 MP4 with constant frame rate."""
    with av.open(str(SOURCE)) as source:
        stream = source.streams.video[0]
        rate = Fraction(stream.average_rate).limit_denominator(1001)
        frames = [frame.to_ndarray(format="bgr24") for frame in source.decode(stream)]
    wanted = round(seconds * rate)
    with av.open(str(target), mode="w", format="mp4") as output:
        encoder = output.add_stream("libx264", rate=rate, options={"preset": "veryfast", "crf": "20"})
        encoder.width, encoder.height, encoder.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        for index in range(wanted):
            output.mux(encoder.encode(av.VideoFrame.from_ndarray(frames[index % len(frames)], format="bgr24")))
        output.mux(encoder.encode(None))
    return target


def start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    return subprocess.Popen(  # nosec B603  # a fixed argument list, no shell
        [sys.executable, *args],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def backend_env(backend: str, workdir: Path) -> tuple[dict, callable]:
    if backend == "embedded":
        return {
            "EMOTION_DATABASE_URL": f"sqlite:///{workdir / 'videos.db'}",
            "EMOTION_BROKER_URL": f"sqla+sqlite:///{workdir / 'queue.db'}",
        }, lambda: None
    import psycopg
    import redis

    name = f"emotion_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    redis.Redis.from_url("redis://127.0.0.1:6379/12").flushdb()

    def cleanup() -> None:
        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    return {
        "EMOTION_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "EMOTION_BROKER_URL": "redis://127.0.0.1:6379/12",
    }, cleanup


def cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine since boot (Linux /proc/stat); zeros elsewhere."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except OSError:
        return 0, 0
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def run_job(video: Path, workers: int, backend: str, model_target: str, workdir: Path) -> dict:
    """A fresh database / queue and ``workers`` worker processes; one job from upload to done."""
    env, cleanup = backend_env(backend, workdir / f"{workers}w")
    (workdir / f"{workers}w").mkdir(exist_ok=True)
    env |= {
        "EMOTION_STORAGE_DIR": str(workdir / f"{workers}w" / "videos"),
        "EMOTION_MODEL_SERVER": model_target,
        "EMOTION_YUNET_PATH": str(YUNET),
    }
    os.environ.update(env)
    from emotion_detector.settings import Settings
    from emotion_detector.videos.service import VideoService

    service = VideoService(Settings())
    processes = []
    try:
        for n in range(workers):
            log = workdir / f"worker-{workers}-{n}.log"
            args = ["-m", "celery", "-A", "emotion_detector.videos.jobs", "worker", "--concurrency", "1", "--loglevel", "INFO"]
            processes.append(
                start([*args, "--hostname", f"bench{n}-{uuid.uuid4().hex[:4]}@%h", "--without-gossip", "--without-mingle"], env, log)
            )
        time.sleep(8)  # workers import, connect and start polling
        with open(video, "rb") as file:
            job = service.create(iter(lambda: file.read(1 << 20), b""), video.name, owner=None)
        started, cpu_before = time.perf_counter(), cpu_times()
        while (status := service.status(job.id, owner=None).to_json())["status"] in ("queued", "running"):
            time.sleep(0.2)
        wall_s = time.perf_counter() - started
        busy, total = (after - before for after, before in zip(cpu_times(), cpu_before, strict=True))
        if status["status"] != "done":
            raise RuntimeError(f"job failed: {status}")
        summary = service.results(job.id, owner=None).to_json()["video"]
        segments = service.get(job.id, owner=None).segments
        return {
            "workers": workers,
            "backend": backend,
            "duration_s": summary["duration_s"],
            "frames_analysed": summary["frames_analysed"],
            "segments": summary["segments"],
            "wall_s": round(wall_s, 2),
            "speed_x_realtime": round(summary["duration_s"] / wall_s, 2),
            "analysis_busy_s": summary["segment_busy_s"],
            "analysis_ms_per_frame": round(1000 * summary["segment_busy_s"] / summary["frames_analysed"], 2),
            "render_busy_s": summary["render_busy_s"],
            "worker_processes_used": len({s.worker for s in segments if s.worker}),
            # How much of the machine the job kept busy: near 100 %, more workers on it cannot help.
            "machine_cpu_busy_pct": round(100 * busy / total, 1) if total else None,
        }
    finally:
        for process in processes:
            os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
        cleanup()


FER_SCRIPT = """
import json, sys, tempfile, time
import cv2
from fer.classes import Video
from fer.fer import FER
video = sys.argv[1]
started = time.perf_counter()
Video(video, outdir=tempfile.mkdtemp()).analyze(FER(mtcnn=False), display=False, frequency=1, save_video=False, save_frames=False)
wall_s = time.perf_counter() - started
capture = cv2.VideoCapture(video)
duration_s = capture.get(cv2.CAP_PROP_FRAME_COUNT) / capture.get(cv2.CAP_PROP_FPS)
print(json.dumps({"wall_s": round(wall_s, 2), "speed_x_realtime": round(duration_s / wall_s, 2)}))
"""


def fer_speed(video: Path, python: str) -> dict:
    """The `fer` package's Video analysis (TensorFlow; Haar detector, every frame) on the same file, run by
    an interpreter that has it installed: it is kept out of this project's requirements."""
    # fer writes data.csv into its working directory: a scratch folder, never the checkout or shared/media.
    with tempfile.TemporaryDirectory(prefix="bench-fer-") as scratch:
        result = subprocess.run([python, "-c", FER_SCRIPT, str(video)], capture_output=True, text=True, timeout=1800, cwd=scratch)  # nosec B603  # a fixed argument list, no shell
    if result.returncode != 0:
        return {"fer": f"failed: {result.stderr.strip().splitlines()[-1] if result.stderr.strip() else result.returncode}"}
    return {"fer": json.loads(result.stdout.strip().splitlines()[-1])}


def one_run(video: Path, workers: int, args: argparse.Namespace, model_target: str, workdir: Path, checkout: Path = ROOT) -> dict:
    """Each configuration in a process of its own: Celery's producer keeps its broker connection, so a
    second run in this process would queue into the first run's broker. ``checkout``: whose code (its own
    bench.video and workers) runs the job."""
    command = [sys.executable, "-m", "bench.video", "--single-run", str(workers), "--backend", args.backend]
    command += ["--video", str(video), "--model-server", model_target, "--workdir", str(workdir / checkout.name)]
    (workdir / checkout.name).mkdir(exist_ok=True)
    answer = subprocess.run(command, cwd=checkout, capture_output=True, text=True, check=True)  # nosec B603  # a fixed argument list, no shell
    return json.loads(answer.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--backend", choices=["embedded", "production"], default="embedded")
    parser.add_argument("--segment-seconds", type=float, default=10.0)
    parser.add_argument("--fer-python", help="a Python with `fer` and TensorFlow installed: measure fer's Video too")
    parser.add_argument("--baseline", type=Path, help="another checkout whose workers run the same job after each of ours")
    parser.add_argument("--single-run", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--model-server", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.single_run:
        print(json.dumps(run_job(args.video, args.single_run, args.backend, args.model_server, args.workdir)))
        return

    workdir = Path(tempfile.mkdtemp(prefix="bench-video-"))
    video = looped_video(workdir / "single_face_1min.mp4", args.seconds)
    os.environ["EMOTION_SEGMENT_SECONDS"] = str(args.segment_seconds)
    grpc_port, rest_port = free_port(), free_port()
    model = start(
        ["-m", "serving", "--host", "127.0.0.1", "--port", str(grpc_port), "--rest_api_port", str(rest_port)], {}, workdir / "model.log"
    )
    try:
        wait_until(lambda: requests.get(f"http://127.0.0.1:{rest_port}/readyz", timeout=1).ok, 60, "model server", model)
        results = []
        for n in args.workers:
            results.append(one_run(video, n, args, f"127.0.0.1:{grpc_port}", workdir))
            if args.baseline:
                before = one_run(video, n, args, f"127.0.0.1:{grpc_port}", workdir, args.baseline)
                results[-1]["baseline"] = {"checkout": str(args.baseline), **before}
                results[-1]["times_baseline_speed"] = round(results[-1]["speed_x_realtime"] / before["speed_x_realtime"], 2)
    finally:
        os.killpg(model.pid, signal.SIGTERM)
    report = {"video": {"source": SOURCE.name, "seconds": args.seconds, "cpu_count": os.cpu_count()}, "runs": results}
    if len(results) > 1:
        report["speed_up"] = {
            f"{r['workers']}_vs_{results[0]['workers']}": round(r["speed_x_realtime"] / results[0]["speed_x_realtime"], 2)
            for r in results[1:]
        }
    if args.fer_python:
        report |= fer_speed(video, args.fer_python)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
