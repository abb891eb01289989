"""``emotion-detector edge`` speed on real video, publishing to a real broker.

    python -m bench.edge                                  # single_face.mp4 looped to 30 s, broker on localhost
    python -m bench.edge --video clip.mp4 --mqtt mqtt://broker:1883

The command runs as a user runs it (a fresh process, models in process, events through the on-disk queue to
the broker), twice on the same file:
- ``--no-pace``: every frame, as fast as the device analyses them: its frames per second;
- at the file's own frame rate, as a camera would feed it: how many of the frames played were analysed (the
  others were dropped because the analysis was behind) — 100 % means the device keeps up with the source.
Rates are the command's own figures (the analysis loop, after the models loaded); events are counted by a
subscriber on the broker. Prints the CPU it ran on: figures count only with it. Needs ../shared (media).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from bench.machine import cpu_description
from bench.video import looped_video
from emotion_detector.edge.messages import events_topic
from tests.conftest import ROOT

# The command's last words on its run: "analysed 72 of 72 frames in 2.40 s (30.0 frames/s)".
ANALYSED = re.compile(r"analysed (\d+) of (\d+) frames in ([\d.]+) s \(([\d.]+) frames/s\)")


class EventCounter:
    def __init__(self, url: str, device_id: str):
        parts = urlsplit(url)
        self.count = 0
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{device_id}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.client.connect(parts.hostname or "localhost", parts.port or 1883)
        self.client.subscribe(events_topic(device_id), qos=1)
        self.client.loop_start()
        time.sleep(0.5)  # the subscription is in place before the device publishes

    def _on_message(self, *_args: object) -> None:
        with self._lock:
            self.count += 1

    def close(self) -> int:
        time.sleep(1.0)  # the last events are on their way
        self.client.disconnect()
        self.client.loop_stop()
        return self.count


def edge_run(video: Path, url: str, paced: bool, scratch: Path) -> dict[str, object]:
    device_id = f"bench-{uuid.uuid4().hex[:8]}"
    counter = EventCounter(url, device_id)
    command = [sys.executable, "-m", "emotion_detector", "edge", "--source", str(video), "--mqtt", url, "--device-id", device_id]
    command += ["--queue-path", str(scratch / f"{device_id}.sqlite3"), *([] if paced else ["--no-pace"])]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)  # nosec B603  # a fixed argument list, no shell
    command_s = time.perf_counter() - started
    events = counter.close()
    found = ANALYSED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"edge failed on {video.name} (exit {done.returncode}): {done.stderr[-800:]}")
    analysed, played, wall_s, fps = int(found[1]), int(found[2]), float(found[3]), float(found[4])
    return {
        "video": video.name,
        "mode": "paced" if paced else "no-pace",
        "frames_played": played,
        "frames_analysed": analysed,
        "analysed_share": round(analysed / played, 3),
        "analysis_wall_s": wall_s,
        "frames_per_s": fps,
        "events_published": events,
        "command_wall_s": round(command_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", type=Path, help="a video file (default: single_face.mp4 looped to --seconds)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of the default looped clip")
    parser.add_argument("--mqtt", default="mqtt://127.0.0.1:1883", help="the broker (default: mqtt://127.0.0.1:1883)")
    args = parser.parse_args()
    print(f"machine: {cpu_description()}")
    with tempfile.TemporaryDirectory(prefix="bench-edge-") as scratch:
        video = args.video or looped_video(Path(scratch) / f"single_face_{args.seconds:g}s.mp4", args.seconds)
        for paced in (False, True):
            print(json.dumps(edge_run(video, args.mqtt, paced, Path(scratch))))


if __name__ == "__main__":
    main()
