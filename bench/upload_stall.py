"""Do live sockets stall while a huge upload arrives on the same web worker?

One gunicorn gevent worker (WEB_CONCURRENCY=1, models in-process) serves a websocket client that streams the
real clip ``single_face.mp4`` at 5 frames/s and times each round trip, first alone, then while a second client
uploads 500 MiB chunked multipart bodies back to back to POST /api/v1/videos on the same worker (the upload
limit is raised above them, so all of each is read, written to disk and probed). Prints round-trip p50/p99/max for both phases.

    python -m bench.upload_stall [--upload-mib 500] [--seconds 15] [--rate-mib-s 12]

Prints the CPU it ran on: figures count only with it. Needs ../shared (media), like the tests.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import requests
from websockets.sync.client import connect

from bench.live import clip_frames, percentile
from bench.machine import cpu_description
from tests.conftest import ROOT, free_port, wait_until

BOUNDARY = "bench-upload-boundary"


def upload_body(size_mib: int, rate_mib_s: float) -> Iterator[bytes]:
    """A multipart body sent in chunks with no Content-Length (chunked transfer, as from a phone's browser),
    at most ``rate_mib_s`` (0: as fast as loopback goes)."""
    yield f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"; filename="big.mp4"\r\n\r\n'.encode()
    chunk, started = os.urandom(1024 * 1024), time.monotonic()
    for sent in range(size_mib):
        if rate_mib_s > 0:
            time.sleep(max(0.0, started + sent / rate_mib_s - time.monotonic()))
        yield chunk
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


def live_round_trips(ws_url: str, frames: list[bytes], seconds: float, fps: float) -> list[float]:
    round_trips_ms: list[float] = []
    with connect(ws_url, max_size=None, open_timeout=30) as ws:
        ws.recv(timeout=30)  # hello
        deadline, n = time.monotonic() + seconds, 0
        while time.monotonic() < deadline:
            tick = time.monotonic()
            ws.send(frames[n % len(frames)])
            json.loads(ws.recv(timeout=60))
            round_trips_ms.append((time.monotonic() - tick) * 1000)
            n += 1
            time.sleep(max(0.0, 1 / fps - (time.monotonic() - tick)))
    return round_trips_ms


def summary(values: list[float]) -> str:
    return f"n={len(values)} p50={percentile(values, 50)} ms p99={percentile(values, 99)} ms max={round(max(values), 1)} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--upload-mib", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=15.0, help="the baseline phase's length")
    parser.add_argument("--fps", type=float, default=5.0)
    parser.add_argument("--rate-mib-s", type=float, default=0.0, help="the uploads' pace (0: as fast as loopback goes)")
    args = parser.parse_args()
    print(f"CPU: {cpu_description()}")
    frames, _ = clip_frames()
    with tempfile.TemporaryDirectory() as folder:
        port = free_port()
        env = {
            **os.environ,
            "PORT": str(port),
            "WEB_CONCURRENCY": "1",
            "EMOTION_MODEL_SERVER": "inprocess",
            "EMOTION_INSTANCE_DIR": folder,
            "EMOTION_DATABASE_URL": f"sqlite:///{Path(folder) / 'db.sqlite'}",
            "EMOTION_BROKER_URL": f"sqla+sqlite:///{Path(folder) / 'queue.sqlite'}",
            "EMOTION_STORAGE_DIR": str(Path(folder) / "videos"),
            "EMOTION_VIDEO_MAX_BYTES": str((args.upload_mib + 10) * 1024 * 1024),
        }
        web = subprocess.Popen(  # nosec B603  # a fixed argument list, no shell
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:create_app()"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url, ws_url = f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}/ws/live"
        try:
            wait_until(lambda: requests.get(f"{url}/", timeout=1).ok, 90, "web app", web)
            live_round_trips(ws_url, frames, 3, args.fps)  # warm-up
            alone = live_round_trips(ws_url, frames, args.seconds, args.fps)
            print(f"live alone:            {summary(alone)}")

            # Uploads back to back, for as long as the live client measures (unthrottled: the worst case).
            stop, outcomes = threading.Event(), []

            def upload() -> None:
                while not stop.is_set():
                    started = time.monotonic()
                    answer = requests.post(
                        f"{url}/api/v1/videos",
                        data=upload_body(args.upload_mib, args.rate_mib_s),
                        headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
                        timeout=600,
                    )
                    outcomes.append((answer.status_code, time.monotonic() - started, answer.text[:120]))

            uploader = threading.Thread(target=upload)
            uploader.start()
            time.sleep(0.2)
            during = live_round_trips(ws_url, frames, args.seconds, args.fps)
            stop.set()
            uploader.join()
            print(f"live during uploads:   {summary(during)}")
            mean_s = sum(seconds for _, seconds, _ in outcomes) / len(outcomes)
            status, _, body = outcomes[0]
            pace = f"at {args.rate_mib_s} MiB/s" if args.rate_mib_s else "unthrottled"
            print(f"{len(outcomes)} uploads of {args.upload_mib} MiB (chunked multipart, {pace}), {mean_s:.1f} s each:")
            print(f"  HTTP {status} {body}")
        finally:
            web.terminate()
            web.wait(10)


if __name__ == "__main__":
    main()
