"""How many edge events per second one forwarder stores, through the local MQTT broker into PostgreSQL.

    python -m bench.forwarder                      # 5000 events into a fresh PostgreSQL database
    python -m bench.forwarder --events 20000 --database sqlite
    python -m bench.forwarder --mqtt mqtt://127.0.0.1:1883   # through a broker already running

Needs the ``mosquitto`` program (or --mqtt) and PostgreSQL on 127.0.0.1:5432 (user postgres, trust), like the
tests. By default a Mosquitto of its own runs with deploy/mosquitto.conf's limits: with Mosquitto's default
limits (1000 queued messages per client) a burst that outruns the forwarder is partly dropped by the broker -
the figure then says how many never arrived.
One ``emotion-detector forward`` process runs against a fresh database. Live: events (QoS 1, as devices send
them) are published as fast as the broker takes them; the figure is events over the time from the first
publish until the last row is in the table (on a small machine the publisher is the limit). Backlog: as many
events queued by the broker while the forwarder is stopped, stored after it starts again: the forwarder's own
pace, from the first row to the last. Prints the CPU it ran on: figures count only with it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import func, select

from bench.machine import cpu_description
from emotion_detector.edge.forwarder import EventStore
from emotion_detector.edge.messages import Event, EventType, events_topic
from emotion_detector.edge.models import EdgeEvent
from emotion_detector.edge.mqtt import Broker
from emotion_detector.videos.db import migrate
from tests.conftest import ROOT, free_port, start_python, stop, wait_until
from tests.edge.conftest import mosquitto
from tests.videos.conftest import new_postgres_database

PUBLISH_INFLIGHT = 1000  # unacknowledged publishes at once (paho's default, 20, would time the publisher)


def events(device_id: str, count: int) -> list[bytes]:
    face = {"box_xyxy": [120, 80, 260, 240], "emotion": {"label": "happy", "score": 0.91}, "age": 31, "gender": "female"}
    now_ms = int(time.time() * 1000)
    return [
        Event(
            seq=seq, device_id=device_id, type=EventType.TRACK_UPDATE, timestamp_ms=now_ms + seq, track_id=seq // 50, seen_ms=seq, face=face
        ).payload()
        for seq in range(count)
    ]


@contextlib.contextmanager
def database(kind: str) -> Iterator[str]:
    if kind == "postgresql":
        with new_postgres_database() as url:
            yield url
    else:
        with tempfile.TemporaryDirectory(prefix="bench-forwarder-") as folder:
            yield f"sqlite:///{folder}/edge.db"


@contextlib.contextmanager
def own_broker(folder: Path) -> Iterator[str]:
    """Mosquitto with deploy/mosquitto.conf's limits, on a free local port, without persistence."""
    limits = [line for line in (ROOT / "deploy" / "mosquitto.conf").read_text().splitlines() if line.startswith("max_")]
    port = free_port()
    with mosquitto(folder, port, *limits):
        yield f"mqtt://127.0.0.1:{port}"


def stored(url: str, device_id: str) -> int:
    with EventStore(url).engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(EdgeEvent).where(EdgeEvent.device_id == device_id)).scalar_one()


def measure(url: str, broker_url: str, count: int, log_dir: Path) -> dict[str, object]:
    """Live: events published while the forwarder runs (the publisher may be the limit). Backlog: the same
    number queued by the broker while the forwarder is stopped, stored after it starts again (its own pace)."""
    migrate(url)
    live_device, backlog_device = f"bench-{uuid.uuid4().hex[:8]}", f"bench-{uuid.uuid4().hex[:8]}"
    client_id = f"bench-forwarder-{uuid.uuid4().hex[:8]}"
    args = ["-m", "emotion_detector", "forward", "--mqtt", broker_url, "--client-id", client_id, "--group", client_id]
    broker = Broker.from_url(broker_url)
    publisher = broker.client(f"bench-publisher-{uuid.uuid4().hex[:8]}")
    publisher.max_inflight_messages_set(PUBLISH_INFLIGHT)
    publisher.connect(broker.host, broker.port)
    publisher.loop_start()

    def publish(device_id: str) -> float:
        topic = events_topic(device_id)
        started = time.perf_counter()
        for info in [publisher.publish(topic, payload, qos=1) for payload in events(device_id, count)]:
            info.wait_for_publish(timeout=60)
        return started

    def start_forwarder(log: Path) -> subprocess.Popen[bytes]:
        process = start_python(args, log, {"EMOTION_DATABASE_URL": url})
        wait_until(lambda: "subscribed to" in log.read_text(), 30, "the forwarder", process)
        return process

    forwarder = start_forwarder(log_dir / "forwarder-live.log")
    try:
        started = publish(live_device)
        published_s = time.perf_counter() - started
        live_count, live_s = wait_stored(url, live_device, count, started)
        stop(forwarder)
        publish(backlog_device)  # queued in the forwarder's session
        forwarder = start_forwarder(log_dir / "forwarder-backlog.log")
        wait_until(lambda: stored(url, backlog_device) > 0, 30, "the backlog's first event", forwarder)
        first_count, first_s = stored(url, backlog_device), time.perf_counter()
        backlog_count, backlog_s = wait_stored(url, backlog_device, count, first_s)
    finally:
        publisher.disconnect()
        publisher.loop_stop()
        stop(forwarder)
        end = broker.client(client_id)  # a clean start ends the forwarder's broker session
        end.connect(broker.host, broker.port, clean_start=True)
        end.disconnect()
    return {
        "events": count,
        "payload_bytes": len(events(live_device, 1)[0]),
        "published_per_s": round(count / published_s),
        "live_stored_per_s": round(live_count / live_s),
        "backlog_stored_per_s": round((backlog_count - first_count) / backlog_s),
        # Dropped by the broker (its queue limit), never sent on to the forwarder.
        "never_arrived": 2 * count - live_count - backlog_count,
    }


def wait_stored(url: str, device_id: str, count: int, started: float, stalled_s: float = 10) -> tuple[int, float]:
    """The rows stored and when the last arrived (perf_counter, from ``started``): all of them, or as many as
    arrived before nothing more came for ``stalled_s``."""
    last_count, last_change = 0, time.perf_counter()
    while last_count < count and time.perf_counter() - last_change < stalled_s:
        time.sleep(0.02)
        now_count = stored(url, device_id)
        if now_count != last_count:
            last_count, last_change = now_count, time.perf_counter()
    return last_count, last_change - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--database", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument("--mqtt", help="a running broker (default: a Mosquitto of its own with deploy/mosquitto.conf's limits)")
    args = parser.parse_args()
    print(f"machine: {cpu_description()}")
    with contextlib.ExitStack() as stack:
        logs = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-forwarder-")))
        broker_url = args.mqtt or stack.enter_context(own_broker(logs))
        url = stack.enter_context(database(args.database))
        result = measure(url, broker_url, args.events, logs)
        print(json.dumps({"database": args.database, "broker": broker_url if args.mqtt else "own (deploy/mosquitto.conf)", **result}))


if __name__ == "__main__":
    main()
