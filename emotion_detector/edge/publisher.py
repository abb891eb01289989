"""Publishing edge events over MQTT (DESIGN.md §2 "Edge"): a device's status (retained, QoS 1, and the last will)
and its events (QoS 1, in order) through the on-disk outbox; beside them its retained ``view`` (what it sees now:
only the newest matters, so it is kept in memory, not queued) and, when asked, Home Assistant's discovery configs
(retained, sent again on every connection).

Threads: the caller queues events (``publish``); paho's network thread connects, reconnects with back-off while
the broker is away, and reports acknowledgements; a sender thread hands the outbox's events to paho, at most
``max_inflight`` unacknowledged at a time, only while connected. After a reconnect paho sends its unacknowledged
messages again first (same order), then the sender goes on with the outbox: order is kept and nothing waits in
memory beyond the in-flight window. Delivery is at least once: an event sent but not acknowledged before a stop
is sent again by the next run (the receiver keeps one per ``event_id``)."""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.reasoncodes import ReasonCode

from emotion_detector.edge.discovery import DISCOVERY_QOS
from emotion_detector.edge.messages import (
    EVENTS_QOS,
    STATUS_QOS,
    VIEW_QOS,
    DeviceState,
    Event,
    Status,
    View,
    events_topic,
    status_topic,
    view_topic,
)
from emotion_detector.edge.mqtt import KEEPALIVE_S, Broker
from emotion_detector.edge.outbox import Outbox

log = logging.getLogger(__name__)

MAX_INFLIGHT = 20  # events handed to paho and not acknowledged yet; the rest wait on disk


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def package_version() -> str:
    try:
        return importlib.metadata.version("emotion-detector")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout that was not pip-installed
        return "unknown"


class Publisher:
    """One device's connection. ``start()``, then ``publish(event)`` for each event, then ``stop()`` (which
    waits a while for the queue to drain, publishes the retained ``offline`` status and disconnects).
    ``publish_view(view)`` whenever what the device sees has changed. ``discovery``: ``(topic, payload)`` pairs
    published retained on every connection (Home Assistant's configs, see discovery.py)."""

    def __init__(
        self,
        broker: Broker,
        device_id: str,
        outbox: Outbox,
        max_inflight: int = MAX_INFLIGHT,
        discovery: Sequence[tuple[str, bytes]] = (),
    ):
        self.broker, self.device_id, self.outbox = broker, device_id, outbox
        self.max_inflight = max_inflight
        self.discovery = list(discovery)
        self.version = package_version()
        self.client = broker.client(client_id=f"emotion-detector-edge-{device_id}")
        self.client.max_inflight_messages_set(max_inflight)
        self.client.on_pre_connect = self._on_pre_connect
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_publish = self._on_publish
        self._changed = threading.Condition()  # guards everything below and the outbox
        self._connected = False
        self._unreachable_reported = False  # one warning per outage, not one per retry
        self._stopping = False
        self._in_flight: dict[int, int] = {}  # paho message id → outbox row
        self._acknowledged_early: set[int] = set()  # acknowledged before publish() returned its message id
        self._own_mids: set[int] = set()  # retained status, view and discovery messages: not the outbox's
        self._view: bytes | None = None  # the newest view, published again after a reconnect
        self.delivered = 0  # events the broker acknowledged
        self._sender = threading.Thread(target=self._send, name=f"edge sender {device_id}", daemon=True)

    # ---- the caller's side --------------------------------------------------------------------------------

    def start(self) -> None:
        """Connect in the background: the broker may be away now and come later, events queue meanwhile."""
        self._set_will()
        self.client.connect_async(self.broker.host, self.broker.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        self._sender.start()

    def publish(self, event: Event) -> None:
        payload = event.payload()  # raises for an event over the size limit, before it is queued
        with self._changed:
            self.outbox.append(events_topic(self.device_id), payload)
            self._changed.notify_all()

    def publish_view(self, view: View) -> None:
        """The newest view: published now if connected, else on the next connection (older ones are not kept)."""
        payload = view.payload()
        with self._changed:
            self._view = payload
            connected = self._connected
        if connected:
            self._publish_retained(view_topic(self.device_id), payload, VIEW_QOS)

    def _publish_retained(self, topic: str, payload: bytes, qos: int) -> None:
        # Not under the lock (see _send); its acknowledgement may come before publish() returns the message id.
        info = self.client.publish(topic, payload, qos=qos, retain=True)
        with self._changed:
            if info.mid in self._acknowledged_early:
                self._acknowledged_early.discard(info.mid)
            else:
                self._own_mids.add(info.mid)

    @property
    def connected(self) -> bool:
        with self._changed:
            return self._connected

    def unacknowledged(self) -> int:
        with self._changed:
            return len(self.outbox)

    def wait_until_sent(self, timeout_s: float) -> bool:
        """Wait until the broker has every queued event (False: some still wait, on disk, after ``timeout_s``)."""
        with self._changed:
            return self._changed.wait_for(lambda: len(self.outbox) == 0, timeout=timeout_s)

    def stop(self, drain_timeout_s: float = 5.0) -> bool:
        """Clean stop: give the queue a little time while connected, then the retained ``offline`` status (the
        will is for deaths only: a clean disconnect does not publish it), then disconnect. False: the broker was
        unreachable, so no ``offline`` was published."""
        if self.connected:
            self.wait_until_sent(drain_timeout_s)
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        self._sender.join(timeout=5)
        said_offline = self.connected
        if said_offline:
            info = self.client.publish(status_topic(self.device_id), self._status(DeviceState.OFFLINE), qos=STATUS_QOS, retain=True)
            info.wait_for_publish(timeout=drain_timeout_s)
        self.client.disconnect()
        self.client.loop_stop()
        return said_offline

    # ---- paho's network thread ----------------------------------------------------------------------------

    def _status(self, state: DeviceState) -> bytes:
        return Status(
            device_id=self.device_id, state=state, timestamp_ms=now_ms(), version=self.version, dropped_events=self.outbox.dropped
        ).payload()

    def _set_will(self) -> None:
        # Before every (re)connection, so the will's timestamp is about when the device was last reachable.
        with self._changed:
            will = self._status(DeviceState.OFFLINE)
        self.client.will_set(status_topic(self.device_id), will, qos=STATUS_QOS, retain=True)

    def _on_pre_connect(self, _client: mqtt.Client, _userdata: Any) -> None:
        self._set_will()

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any) -> None:
        if reason.is_failure:
            log.warning("the broker %s refused the connection: %s", self.broker.describe(), reason)
            return
        with self._changed:
            # On paho's network thread, which also reads the acknowledgements: none can come before these return.
            # Status first: Home Assistant's sensors are available from the moment they are discovered.
            retained = [(status_topic(self.device_id), self._status(DeviceState.ONLINE), STATUS_QOS)]
            retained += [(topic, payload, DISCOVERY_QOS) for topic, payload in self.discovery]
            if self._view is not None:
                retained.append((view_topic(self.device_id), self._view, VIEW_QOS))
            for topic, payload, qos in retained:
                self._own_mids.add(client.publish(topic, payload, qos=qos, retain=True).mid)
            self._connected, self._unreachable_reported = True, False
            self._changed.notify_all()
        log.info("connected to %s", self.broker.describe())

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: Any) -> None:
        if not self._unreachable_reported:
            self._unreachable_reported = True
            log.warning("cannot reach the broker %s; events wait on disk, retrying", self.broker.describe())

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any) -> None:
        with self._changed:
            self._connected = False
        if not self._stopping:
            log.warning("lost the broker %s (%s); events wait on disk until it is back", self.broker.describe(), reason)

    def _on_publish(self, _client: mqtt.Client, _userdata: Any, mid: int, reason: ReasonCode, _properties: Any) -> None:
        if reason.is_failure:  # the broker refused it (e.g. not authorised): kept, sent again after a reconnect
            log.warning("the broker refused message %d: %s", mid, reason)
            return
        with self._changed:
            if mid in self._own_mids:
                self._own_mids.discard(mid)
                return
            row_id = self._in_flight.pop(mid, None)
            if row_id is None:
                self._acknowledged_early.add(mid)
                return
            self._acknowledged(row_id)

    def _acknowledged(self, row_id: int) -> None:
        self.outbox.ack(row_id)
        self.delivered += 1
        self._changed.notify_all()

    # ---- the sender thread --------------------------------------------------------------------------------

    def _send(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._stopping or (self._connected and len(self._in_flight) < self.max_inflight and self.outbox.waiting > 0)
                )
                if self._stopping:
                    return
                batch = self.outbox.take(self.max_inflight - len(self._in_flight))
            for row_id, topic, payload in batch:
                # Not under the lock: paho calls on_publish holding its own lock, which publish() takes too.
                info = self.client.publish(topic, payload, qos=EVENTS_QOS)
                with self._changed:
                    if info.mid in self._acknowledged_early:
                        self._acknowledged_early.discard(info.mid)
                        self._acknowledged(row_id)
                    else:
                        self._in_flight[info.mid] = row_id


def retire(broker: Broker, device_id: str, discovery_prefix: str | None, timeout_s: float = 10.0) -> None:
    """Forget a device that is gone for good: empty retained payloads on its status and view topics and, with a
    discovery prefix, on its Home Assistant config topics (Home Assistant then removes its sensors and the
    device). Its stored events stay in the database. Raises OSError (or TimeoutError) when the broker cannot be
    reached or does not acknowledge in ``timeout_s``."""
    from emotion_detector.edge.discovery import removal_messages

    topics = [status_topic(device_id), view_topic(device_id)]
    if discovery_prefix is not None:
        topics += [topic for topic, _ in removal_messages(discovery_prefix, device_id)]
    # Not the device's own client id: a device still running would be disconnected by the broker.
    client = broker.client(client_id=f"emotion-detector-retire-{device_id}")
    answered = threading.Event()
    refusal: list[ReasonCode] = []

    def on_connect(_client: mqtt.Client, _userdata: Any, _flags: Any, reason: ReasonCode, _properties: Any) -> None:
        if reason.is_failure:
            refusal.append(reason)
        answered.set()

    client.on_connect = on_connect
    client.connect(broker.host, broker.port, keepalive=KEEPALIVE_S)
    client.loop_start()
    try:
        if not answered.wait(timeout_s):
            raise TimeoutError(f"the broker {broker.describe()} did not answer in {timeout_s:g} s")
        if refusal:
            raise ConnectionRefusedError(f"the broker {broker.describe()} refused the connection: {refusal[0]}")
        infos = [client.publish(topic, b"", qos=STATUS_QOS, retain=True) for topic in topics]
        deadline_s = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(timeout=max(0.0, deadline_s - time.monotonic()))
        if not all(info.is_published() for info in infos):
            raise TimeoutError(f"the broker {broker.describe()} did not acknowledge the removals in {timeout_s:g} s")
    finally:
        client.disconnect()
        client.loop_stop()
