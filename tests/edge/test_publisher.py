"""The publisher's bookkeeping with a stand-in for paho's client (no broker, no network): the online status
first, events in order, at most ``max_inflight`` unacknowledged, an event deleted from the queue only when
acknowledged (also when the acknowledgement comes before ``publish()`` has returned its message id)."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.reasoncodes import ReasonCode

from emotion_detector.edge.messages import DeviceState, Event, EventType, Status, events_topic, status_topic
from emotion_detector.edge.mqtt import Broker
from emotion_detector.edge.outbox import Outbox
from emotion_detector.edge.publisher import Publisher


@dataclass
class Info:
    mid: int

    def wait_for_publish(self, timeout: float | None = None) -> None:
        pass


@dataclass
class FakeClient:
    """paho's Client as the publisher uses it; ``ack_at_once``: PUBACK before publish() returns."""

    ack_at_once: bool = False
    published: list[tuple[int, str, bytes, bool]] = field(default_factory=list)
    callbacks: dict[str, Callable[..., Any]] = field(default_factory=dict)
    _mids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("on_"):
            self.callbacks[name] = value
        else:
            super().__setattr__(name, value)

    def max_inflight_messages_set(self, n: int) -> None:
        pass

    def will_set(self, topic: str, payload: bytes, qos: int, retain: bool) -> None:
        self.will = (topic, payload, qos, retain)

    def connect_async(self, host: str, port: int, keepalive: int) -> None:
        pass

    def loop_start(self) -> None:
        self.callbacks["on_connect"](self, None, None, ReasonCode(PacketTypes.CONNACK, "Success"), None)

    def publish(self, topic: str, payload: bytes, qos: int, retain: bool = False) -> Info:
        with self._lock:
            mid = next(self._mids)
            self.published.append((mid, topic, payload, retain))
        if self.ack_at_once:
            self.ack(mid)
        return Info(mid)

    def ack(self, mid: int) -> None:
        self.callbacks["on_publish"](self, None, mid, ReasonCode(PacketTypes.PUBACK, "Success"), None)

    def disconnect(self) -> None:
        pass

    def loop_stop(self) -> None:
        pass


def start(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, client: FakeClient, max_inflight: int = 20) -> Publisher:
    monkeypatch.setattr(Broker, "client", lambda _self, client_id: client)
    publisher = Publisher(Broker.from_url("mqtt://broker.invalid"), "door-1", Outbox(tmp_path / "q.sqlite3", 100), max_inflight)
    publisher.start()
    return publisher


def event(seq: int) -> Event:
    return Event(seq=seq, device_id="door-1", type=EventType.TRACK_UPDATE, timestamp_ms=1, track_id=1, seen_ms=0, face={"id": 1})


def wait_for(check: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 5
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_online_first_then_events_in_order_and_each_leaves_the_queue_when_acknowledged_even_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    client = FakeClient(ack_at_once=True)
    publisher = start(tmp_path, monkeypatch, client)
    for seq in range(5):
        publisher.publish(event(seq))
    assert publisher.wait_until_sent(5)
    assert publisher.delivered == 5 and publisher.unacknowledged() == 0
    (_, topic, payload, retain), *events = client.published
    assert topic == status_topic("door-1") and retain and Status.model_validate_json(payload).state is DeviceState.ONLINE
    assert [Event.model_validate_json(p).seq for _, t, p, _ in events] == [0, 1, 2, 3, 4]
    assert {t for _, t, _, _ in events} == {events_topic("door-1")}
    assert publisher.stop()
    *_, (_, topic, payload, retain) = client.published
    assert topic == status_topic("door-1") and retain and Status.model_validate_json(payload).state is DeviceState.OFFLINE


def test_at_most_max_inflight_unacknowledged_the_rest_wait_on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    client = FakeClient()
    publisher = start(tmp_path, monkeypatch, client, max_inflight=4)
    client.ack(client.published[0][0])  # the online status
    for seq in range(10):
        publisher.publish(event(seq))
    wait_for(lambda: len(client.published) == 1 + 4)
    time.sleep(0.1)
    assert len(client.published) == 1 + 4 and publisher.unacknowledged() == 10
    for mid, *_ in client.published[1:3]:
        client.ack(mid)
    wait_for(lambda: len(client.published) == 1 + 6)
    assert publisher.unacknowledged() == 8
    while publisher.unacknowledged():
        for mid, *_ in client.published[1:]:
            client.ack(mid)  # acknowledging one twice does nothing
        time.sleep(0.01)
    seqs = [Event.model_validate_json(p).seq for _, _, p, _ in client.published[1:]]
    assert seqs == list(range(10)) and publisher.delivered == 10
    publisher.stop()
