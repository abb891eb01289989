"""``emotion-detector edge`` as a real process against the real broker (Mosquitto on 127.0.0.1:1883) on real
video: the contract's messages, the last will after kill -9, and the on-disk queue while the broker is
unreachable (through a TCP proxy this test closes and reopens). Each test has a device id of its own."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from bench.video import looped_video
from emotion_detector.__main__ import main
from emotion_detector.edge.discovery import DEFAULT_PREFIX, config_topics
from emotion_detector.edge.messages import DeviceState, Event, EventType, Status, View, events_topic, status_topic, view_topic
from emotion_detector.edge.mqtt import Broker
from emotion_detector.edge.publisher import retire
from tests.conftest import ROOT, free_port

pytestmark = pytest.mark.slow

BROKER = ("127.0.0.1", 1883)


@dataclass(frozen=True)
class Message:
    topic: str
    payload: bytes
    retain: bool


class Subscriber:
    """Everything published under one device's topics, in arrival order (QoS 1)."""

    def __init__(self, device_id: str, topic_filter: str | None = None):
        self.device_id = device_id
        self.messages: list[Message] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-subscriber-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(*BROKER)
        self.client.subscribe(topic_filter or f"emotion-detector/{device_id}/#", qos=1)
        self.client.loop_start()
        assert subscribed.wait(10), "the broker did not confirm the subscription"

    def _on_message(self, _client: mqtt.Client, _userdata: object, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(Message(message.topic, message.payload, bool(message.retain)))

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def events(self) -> list[Event]:
        with self._lock:
            return [Event.model_validate_json(m.payload) for m in self.messages if m.topic == events_topic(self.device_id)]

    def views(self) -> list[View]:
        with self._lock:
            return [View.model_validate_json(m.payload) for m in self.messages if m.topic == view_topic(self.device_id)]

    def statuses(self) -> list[Status]:
        with self._lock:
            return [Status.model_validate_json(m.payload) for m in self.messages if m.topic == status_topic(self.device_id)]

    def wait_for(self, check: Callable[[], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while not check():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} not seen after {timeout_s} s; got {[(m.topic, m.payload[:80]) for m in self.messages]}")
            time.sleep(0.05)


def retained_status(device_id: str) -> Status:
    """What a subscriber that comes later gets: the retained status."""
    late = Subscriber(device_id)
    try:
        late.wait_for(lambda: bool(late.statuses()), 10, "the retained status")
        assert late.messages[0].retain
        return late.statuses()[0]
    finally:
        late.close()


class Proxy:
    """A TCP forwarder to the broker that can be closed (connections cut, new ones refused) and reopened on the
    same port: the broker becomes unreachable for the edge process without stopping it for anyone else."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = 0
        self._connections: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.open()

    def open(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        self.port, self._listener = listener.getsockname()[1], listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        for connection in self._connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()
        self._connections.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            upstream = socket.create_connection(self.target)
            self._connections += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        for end in (source, sink):  # one side gone: the other goes too, as with a real network cut
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)


def edge(video: Path, device_id: str, queue: Path, *extra: str, port: int = BROKER[1]) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "emotion_detector", "edge", "--source", str(video), "--mqtt", f"mqtt://127.0.0.1:{port}"]
    command += ["--device-id", device_id, "--queue-path", str(queue), *extra]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def device_id() -> Iterator[str]:
    """A device of the test's own; its retained status, view and Home Assistant configs (under the default
    prefix) are cleared afterwards (the broker is shared)."""
    name = f"test-{uuid.uuid4().hex[:12]}"
    yield name
    retire(Broker.from_url(f"mqtt://{BROKER[0]}:{BROKER[1]}"), name, DEFAULT_PREFIX)


@pytest.fixture(scope="module")
def long_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """single_face.mp4 looped to 15 s: long enough to cut the broker off mid-run."""
    return looped_video(tmp_path_factory.mktemp("edge") / "single_face_15s.mp4", 15)


def check_contract(events: list[Event], interval_ms: int) -> None:
    """seq without gaps from 0, at most one update per track per interval, one end per track, and it is last."""
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.event_id for e in events}) == len(events)
    for track_id, group in itertools.groupby(sorted(events, key=lambda e: (e.track_id, e.seq)), key=lambda e: e.track_id):
        track = list(group)
        updates = [e for e in track if e.type is EventType.TRACK_UPDATE]
        assert [e.type for e in track].count(EventType.TRACK_END) == 1 and track[-1].type is EventType.TRACK_END, track_id
        assert updates, f"track {track_id} ended without an update"
        assert all(b.timestamp_ms - a.timestamp_ms >= interval_ms for a, b in itertools.pairwise(updates)), track_id
        assert all(e.face["id"] == track_id and "image" not in json.dumps(e.face) for e in track)
        assert [e.seen_ms for e in track] == sorted(e.seen_ms for e in track)


def test_the_edge_command_publishes_the_contracts_messages_for_a_real_video(shared_dir: Path, tmp_path: Path, device_id: str):
    subscriber = Subscriber(device_id)
    try:
        process = edge(shared_dir / "media" / "videos" / "single_face.mp4", device_id, tmp_path / "queue.sqlite3", "--interval-s", "0.5")
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        subscriber.wait_for(lambda: subscriber.statuses()[-1:] and subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "offline")
        events, statuses = subscriber.events(), subscriber.statuses()
    finally:
        subscriber.close()
    assert [s.state for s in statuses] == [DeviceState.ONLINE, DeviceState.OFFLINE]
    assert all(s.device_id == device_id and s.dropped_events == 0 for s in statuses)
    check_contract(events, interval_ms=500)
    # One smiling face for 2.4 s: one track, updated at 0, 0.5, ... 2.0 s, then its end.
    assert {e.track_id for e in events} == {events[0].track_id}
    assert 4 <= len(events) <= 7 and events[-1].seen_ms >= 2000, [(e.type, e.seen_ms) for e in events]
    assert all(e.device_id == device_id and len(e.payload()) < 8192 for e in events)
    assert "happy" in {e.emotion for e in events}
    assert retained_status(device_id).state is DeviceState.OFFLINE
    assert "0 waiting on disk, 0 dropped" in err


def test_every_face_at_the_back_of_a_classroom_is_published(shared_dir: Path, tmp_path: Path, device_id: str):
    """classroom.mp4 (480x270, 3.2 s): four people whose faces are 14-22 px high, one track each."""
    subscriber = Subscriber(device_id)
    try:
        process = edge(shared_dir / "media" / "videos" / "classroom.mp4", device_id, tmp_path / "queue.sqlite3", "--interval-s", "0.5")
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        subscriber.wait_for(lambda: subscriber.statuses()[-1:] and subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "offline")
        events = subscriber.events()
    finally:
        subscriber.close()
    check_contract(events, interval_ms=500)
    ends = [e for e in events if e.type is EventType.TRACK_END]
    assert len(ends) == 4 and all(e.seen_ms >= 2500 for e in ends), [(e.track_id, e.seen_ms) for e in ends]


def test_a_killed_device_is_reported_offline_by_its_last_will(long_video: Path, tmp_path: Path, device_id: str):
    subscriber = Subscriber(device_id)
    try:
        process = edge(long_video, device_id, tmp_path / "queue.sqlite3")
        try:
            subscriber.wait_for(lambda: bool(subscriber.events()), 60, "a first event")
            assert retained_status(device_id).state is DeviceState.ONLINE
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            process.kill()
            process.communicate()
        subscriber.wait_for(lambda: subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "the last will")
    finally:
        subscriber.close()
    assert [s.state for s in subscriber.statuses()] == [DeviceState.ONLINE, DeviceState.OFFLINE]
    assert retained_status(device_id).state is DeviceState.OFFLINE
    assert not any(e.type is EventType.TRACK_END for e in subscriber.events())  # killed: no clean end


def run_with_an_outage(video: Path, tmp_path: Path, device_id: str, *extra: str) -> tuple[list[Event], list[Status], str]:
    """The edge command through a proxy that is closed for 3 s once the first events have arrived."""
    proxy = Proxy(BROKER)
    subscriber = Subscriber(device_id)
    try:
        process = edge(video, device_id, tmp_path / "queue.sqlite3", "--interval-s", "0.1", *extra, port=proxy.port)
        try:
            subscriber.wait_for(lambda: len(subscriber.events()) >= 3, 60, "the first events")
            proxy.close()
            subscriber.wait_for(lambda: subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "the last will")
            time.sleep(3)
            assert process.poll() is None, "the edge process must keep running while the broker is away"
            proxy.open()
            _, err = process.communicate(timeout=120)
        finally:
            process.kill()
        assert process.returncode == 0, err
        subscriber.wait_for(lambda: subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "offline at the end")
        return subscriber.events(), subscriber.statuses(), err
    finally:
        subscriber.close()
        proxy.close()


def first_of_each(events: list[Event]) -> list[Event]:
    """At least once: an event whose acknowledgement the cut lost is sent again; receivers keep one per event_id."""
    seen: set[str] = set()
    return [e for e in events if not (e.event_id in seen or seen.add(e.event_id))]


def test_events_made_while_the_broker_is_unreachable_arrive_afterwards_in_order(long_video: Path, tmp_path: Path, device_id: str):
    events, statuses, err = run_with_an_outage(long_video, tmp_path, device_id)
    events = first_of_each(events)
    assert [s.state for s in statuses] == [DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.ONLINE, DeviceState.OFFLINE]
    assert statuses[1].dropped_events == 0 and statuses[-1].dropped_events == 0
    check_contract(events, interval_ms=100)  # every event arrived, in seq order
    assert len(events) > 30  # 15 s of a face at one update per 0.1 s, 3 s of them made while cut off
    assert "0 waiting on disk, 0 dropped" in err


def test_with_a_tiny_queue_the_oldest_are_dropped_and_the_next_status_counts_them(long_video: Path, tmp_path: Path, device_id: str):
    events, statuses, _err = run_with_an_outage(long_video, tmp_path, device_id, "--queue-max-events", "2")
    events = first_of_each(events)
    seqs = [e.seq for e in events]
    assert seqs == sorted(seqs)  # in order, with gaps where events were dropped
    missing = set(range(max(seqs) + 1)) - set(seqs)
    reconnected = statuses[2]
    assert [s.state for s in statuses] == [DeviceState.ONLINE, DeviceState.OFFLINE, DeviceState.ONLINE, DeviceState.OFFLINE]
    assert reconnected.dropped_events and reconnected.dropped_events > 0
    assert statuses[-1].dropped_events == len(missing)


def test_sigterm_stops_cleanly_the_open_track_ends_and_the_device_goes_offline(long_video: Path, tmp_path: Path, device_id: str):
    subscriber = Subscriber(device_id)
    try:
        process = edge(long_video, device_id, tmp_path / "queue.sqlite3")
        try:
            subscriber.wait_for(lambda: bool(subscriber.events()), 60, "a first event")
            process.terminate()
            _, err = process.communicate(timeout=30)
        finally:
            process.kill()
        assert process.returncode == 0, err
        subscriber.wait_for(lambda: subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "offline")
        events = subscriber.events()
    finally:
        subscriber.close()
    assert [s.state for s in subscriber.statuses()] == [DeviceState.ONLINE, DeviceState.OFFLINE]
    check_contract(events, interval_ms=1000)
    assert "terminated" in err and "0 waiting on disk" in err


def test_events_left_on_disk_by_a_run_without_a_broker_go_first_in_the_next_run(shared_dir: Path, tmp_path: Path, device_id: str):
    video, queue = shared_dir / "media" / "videos" / "single_face.mp4", tmp_path / "queue.sqlite3"
    offline_run = edge(video, device_id, queue, port=free_port())  # nothing listens there
    _, err = offline_run.communicate(timeout=120)
    assert offline_run.returncode == 0, err
    assert "cannot reach the broker" in err and "0 events delivered" in err and "could not publish its offline status" in err
    subscriber = Subscriber(device_id)
    try:
        online_run = edge(video, device_id, queue)
        _, err = online_run.communicate(timeout=120)
        assert online_run.returncode == 0, err
        subscriber.wait_for(lambda: subscriber.statuses()[-1:] and subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "offline")
        events = subscriber.events()
    finally:
        subscriber.close()
    restart = next(i for i, e in enumerate(events) if i and e.seq == 0)  # the second run's first event
    assert restart >= 2
    check_contract(events[:restart], interval_ms=1000)  # the first run's, complete and in order
    check_contract(events[restart:], interval_ms=1000)
    assert "0 waiting on disk" in err


def test_the_edge_command_tells_home_assistant_what_it_sees(
    shared_dir: Path, tmp_path: Path, device_id: str, monkeypatch: pytest.MonkeyPatch
):
    prefix = f"test-{uuid.uuid4().hex[:10]}/homeassistant"
    monkeypatch.setenv("EMOTION_HA_DISCOVERY_PREFIX", prefix)  # the process inherits it
    subscriber = Subscriber(device_id)
    discovery = Subscriber(device_id, topic_filter=f"{prefix}/#")
    try:
        process = edge(shared_dir / "media" / "videos" / "single_face.mp4", device_id, tmp_path / "queue.sqlite3", "--interval-s", "0.5")
        _out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        subscriber.wait_for(lambda: subscriber.statuses()[-1:] and subscriber.statuses()[-1].state is DeviceState.OFFLINE, 10, "offline")
        views = subscriber.views()
        configs = {m.topic for m in discovery.messages}
    finally:
        subscriber.close()
        discovery.close()
        # Retired under the test's prefix (the device_id fixture's cleanup comes after monkeypatch's undoing).
        assert main(["edge", "--retire", "--device-id", device_id, "--mqtt", f"mqtt://{BROKER[0]}:{BROKER[1]}"]) == 0
    assert configs == set(config_topics(prefix, device_id))
    # One smiling face for 2.4 s, then nobody (the source ended).
    assert any(v.faces_in_view == 1 and v.dominant_emotion == "happy" and v.emotion_shares["happy"] == 1.0 for v in views), views
    assert views[-1].faces_in_view == 0 and views[-1].dominant_emotion is None
    assert all(b.timestamp_ms - a.timestamp_ms >= 500 for a, b in itertools.pairwise(views[:-1]))
