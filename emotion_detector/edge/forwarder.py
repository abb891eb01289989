"""``emotion-detector forward``: stores edge devices' events and statuses from the MQTT broker in the database
(DESIGN.md §2 "Forwarder").

Nothing is lost between the broker and the database: messages are acknowledged by hand (paho's manual_ack)
only after the transaction that stores them has committed, and the session is persistent (clean_start off, a
session expiry interval), so a message the forwarder never stored - it crashed, the database was down, the
broker restarted - is delivered again. Storing twice is harmless: an ``event_id`` is stored once.

Events come through a shared subscription (``$share/<group>/...``): the broker gives each event to one
forwarder of the group, so several forwarders split the load. Statuses come to every forwarder (each applies
them; an upsert is idempotent).

The broker keeps a disconnected forwarder's session - and its share of the group's events - until the session
expires, so a forwarder's client id must be stable across restarts, and distinct from every other running
forwarder's (the default: the group, the host name and the lowest number no other forwarder on the host holds).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from pydantic import ValidationError
from sqlalchemy import Engine, case, exc
from sqlalchemy.dialects import postgresql, sqlite

from emotion_detector.edge.forward_cli import DEFAULT_GROUP, ClientId
from emotion_detector.edge.messages import (
    ALL_EVENTS,
    ALL_STATUS,
    EVENTS_QOS,
    MAX_PAYLOAD_BYTES,
    STATUS_QOS,
    DeviceState,
    Event,
    Status,
    device_of,
)
from emotion_detector.edge.models import Device, EdgeEvent
from emotion_detector.edge.mqtt import KEEPALIVE_S, Broker
from emotion_detector.videos.db import RETRY_S as DATABASE_RETRY_S
from emotion_detector.videos.db import engine_for

log = logging.getLogger(__name__)

SESSION_EXPIRY_S = 24 * 3600  # how long the broker queues events for a forwarder that is away
MAX_BATCH = 500  # messages per transaction: one commit (an fsync) for many rows
RECEIVE_MAXIMUM = 1000  # unacknowledged messages the broker may send ahead (batches fill while one commits)
EMOTION_MAX_CHARS = 16  # the edge_events.emotion column
VERSION_MAX_CHARS = 64  # the edge_devices.version column


@dataclass(frozen=True)
class ForwarderOptions:
    group: str = DEFAULT_GROUP
    client_id: str | None = None  # None: forward_cli.ClientId, held while the forwarder runs
    session_expiry_s: int = SESSION_EXPIRY_S
    max_batch: int = MAX_BATCH


@dataclass(frozen=True)
class Received:
    """One MQTT message as the network thread hands it to the storing thread."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int  # which connection delivered it: a packet id means nothing on the next one
    received_ms: int


def parse(topic: str, payload: bytes) -> Event | Status | None:
    """The message on an edge topic, or None (logged) for one the forwarder cannot store."""
    if not payload:
        return None  # a retained status being cleared
    try:
        device_id = device_of(topic)
        kind = topic.rsplit("/", 1)[1]
        if len(payload) >= MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload of {len(payload)} bytes; the contract allows under {MAX_PAYLOAD_BYTES}")
        message: Event | Status
        if kind == "events":
            message = Event.model_validate_json(payload)
        elif kind == "status":
            message = Status.model_validate_json(payload)
        else:
            raise ValueError("neither events nor status")
        if message.device_id != device_id:
            raise ValueError(f"device_id {message.device_id!r} in the payload, {device_id!r} in the topic")
    except (ValueError, ValidationError) as error:  # ValidationError: one line per wrong field
        log.warning("skipped a message on %s: %s", topic, str(error).replace("\n", "; ")[:500])
        return None
    return message


@dataclass
class _DeviceUpdate:
    last_seen_ms: int
    status: Status | None = None  # the last status of the batch, in the broker's order


class EventStore:
    """Writes parsed messages to the database, a batch per transaction."""

    def __init__(self, database_url: str):
        self.engine: Engine = engine_for(database_url)
        self._insert = postgresql.insert if self.engine.dialect.name == "postgresql" else sqlite.insert

    def store(self, messages: Sequence[tuple[Event | Status, int]]) -> None:
        """``(message, received_ms)`` pairs, in the order the broker delivered them, in one transaction."""
        events: dict[str, dict[str, Any]] = {}
        devices: dict[str, _DeviceUpdate] = {}
        for message, received_ms in messages:
            update = devices.setdefault(message.device_id, _DeviceUpdate(message.timestamp_ms))
            update.last_seen_ms = max(update.last_seen_ms, message.timestamp_ms)
            if isinstance(message, Status):
                update.status = message
            else:
                events[message.event_id] = _event_row(message, received_ms)
        with self.engine.begin() as connection:
            if events:
                rows = [events[event_id] for event_id in sorted(events)]  # one lock order for every forwarder
                connection.execute(self._insert(EdgeEvent).on_conflict_do_nothing(index_elements=["event_id"]), rows)
            for device_id in sorted(devices):
                connection.execute(self._device_upsert(device_id, devices[device_id]))

    def _device_upsert(self, device_id: str, update: _DeviceUpdate) -> Any:
        status = update.status
        row = {
            "device_id": device_id,
            # A device's first event without a status yet: it is sending, so it is online.
            "state": status.state if status else DeviceState.ONLINE,
            "last_seen_ms": update.last_seen_ms,
            "version": status.version[:VERSION_MAX_CHARS] if status else None,
            "dropped_events": (status.dropped_events or 0) if status else 0,
        }
        statement = self._insert(Device).values(row)
        table = Device.__table__.c
        # Last seen never moves back: a late status (the last will carries the time its connection was made)
        # still sets the state, which follows the broker's order of a device's statuses.
        changes: dict[str, Any] = {
            "last_seen_ms": case(
                (statement.excluded.last_seen_ms > table.last_seen_ms, statement.excluded.last_seen_ms), else_=table.last_seen_ms
            )
        }
        if status is not None:
            changes |= {"state": statement.excluded.state, "version": statement.excluded.version}
            if status.dropped_events is not None:
                changes["dropped_events"] = statement.excluded.dropped_events
        return statement.on_conflict_do_update(index_elements=["device_id"], set_=changes)


def _event_row(event: Event, received_ms: int) -> dict[str, Any]:
    emotion = event.emotion
    return {
        "event_id": event.event_id,
        "device_id": event.device_id,
        "seq": event.seq,
        "type": event.type,
        "timestamp_ms": event.timestamp_ms,
        "track_id": event.track_id,
        "seen_ms": event.seen_ms,
        "emotion": emotion if isinstance(emotion, str) and len(emotion) <= EMOTION_MAX_CHARS else None,
        "face": event.face,
        "received_ms": received_ms,
    }


def _transient(error: exc.DBAPIError) -> bool:
    """A database that is down, restarting or busy (worth retrying), rather than a row it refuses."""
    return isinstance(error, exc.OperationalError | exc.InterfaceError) or error.connection_invalidated


class Forwarder:
    """paho's network thread receives; ``run`` (the calling thread) stores batches and acknowledges them."""

    def __init__(self, broker: Broker, store: EventStore, options: ForwarderOptions | None = None):
        self.broker = broker
        self.store = store
        self.options = options or ForwarderOptions()
        self.stored_events = 0  # since the start, for the log and tests
        self.stored_statuses = 0
        self._received: queue.Queue[Received] = queue.Queue()
        self._connection = 0  # changes on every connect and disconnect
        self.subscribed = threading.Event()  # connected, and the broker confirmed the subscriptions
        self._default_id: ClientId | None = None
        if self.options.client_id:
            self.client_id = self.options.client_id
        else:
            self._default_id = ClientId(self.options.group)
            self.client_id = self._default_id.value
        self._client = broker.client(self.client_id)
        self._client.manual_ack_set(True)  # acknowledged in _acknowledge, after the commit
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe

    # ---- paho's network thread ---------------------------------------------------------------------------

    def _on_connect(self, client: mqtt.Client, _userdata: Any, flags: mqtt.ConnectFlags, reason: ReasonCode, _properties: Any) -> None:
        if reason.is_failure:
            log.error("the broker %s refused the connection: %s", self.broker.describe(), reason)
            return
        self._connection += 1
        log.info(
            "connected to %s as %s (session %s)",
            self.broker.describe(),
            self.client_id,
            "resumed" if flags.session_present else "new",
        )
        # Also on a resumed session: subscribing again is harmless and repairs a session the broker lost.
        client.subscribe([(f"$share/{self.options.group}/{ALL_EVENTS}", EVENTS_QOS), (ALL_STATUS, STATUS_QOS)])

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: list[ReasonCode], _properties: Any) -> None:
        refused = [str(reason) for reason in reasons if reason.is_failure]
        if refused:  # e.g. a broker without shared subscriptions, or an ACL: nothing would ever arrive
            log.error("the broker %s refused the subscriptions: %s", self.broker.describe(), ", ".join(refused))
            return
        log.info("subscribed to %s's events (shared by group %s) and every status", self.broker.describe(), self.options.group)
        self.subscribed.set()

    def _on_disconnect(
        self, _client: mqtt.Client, _userdata: Any, _flags: mqtt.DisconnectFlags, reason: ReasonCode, _properties: Any
    ) -> None:
        self._connection += 1  # what is still queued will come again: never acknowledge it on the new connection
        self.subscribed.clear()
        if reason.is_failure:
            log.warning("lost the broker %s (%s); reconnecting", self.broker.describe(), reason)

    def _on_message(self, _client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._received.put(
            Received(message.topic, bytes(message.payload), message.mid, message.qos, self._connection, int(time.time() * 1000))
        )

    # ---- the storing thread ------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Until ``stop`` is set; reconnects to the broker and waits for the database as long as it takes."""
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]  # paho leaves it untyped
        properties.SessionExpiryInterval = self.options.session_expiry_s
        properties.ReceiveMaximum = RECEIVE_MAXIMUM
        self._client.connect_async(self.broker.host, self.broker.port, KEEPALIVE_S, clean_start=False, properties=properties)
        self._client.loop_start()  # connects, and reconnects with backoff, on its own thread
        try:
            while not stop.is_set():
                batch = self._next_batch(timeout_s=0.2)
                if batch and self._store(batch, stop):
                    self._acknowledge(batch)
        finally:
            log.info("stored %d events and %d statuses", self.stored_events, self.stored_statuses)
            self._client.disconnect()  # the session stays for session_expiry_s: unacknowledged messages come again
            self._client.loop_stop()
            self.close()

    def close(self) -> None:
        """Gives its default client id back (for the next forwarder that starts on this host)."""
        if self._default_id is not None:
            self._default_id.release()

    def _next_batch(self, timeout_s: float) -> list[Received]:
        """What has arrived (up to max_batch), after waiting for the first: under load batches grow on their
        own while the previous one commits."""
        try:
            batch = [self._received.get(timeout=timeout_s)]
        except queue.Empty:
            return []
        while len(batch) < self.options.max_batch:
            try:
                batch.append(self._received.get_nowait())
            except queue.Empty:
                break
        return batch

    def _store(self, batch: list[Received], stop: threading.Event) -> bool:
        """True once stored (or refused for good); False if stopped first (then nothing is acknowledged)."""
        parsed = [(message, item.received_ms) for item in batch if (message := parse(item.topic, item.payload)) is not None]
        delay_s = DATABASE_RETRY_S[0]
        while parsed:
            try:
                self._write(parsed)
                break
            except exc.DBAPIError as error:  # only a transient one comes here
                log.warning(
                    "database unavailable (%s): holding %d messages unacknowledged, retrying in %.1f s",
                    type(error.orig).__name__,
                    len(parsed),
                    delay_s,
                )
            if stop.wait(delay_s):
                return False
            delay_s = min(delay_s * 2, DATABASE_RETRY_S[1])
        return True

    def _write(self, parsed: Sequence[tuple[Event | Status, int]]) -> None:
        """The batch in one transaction; one the database refuses (not a transient error), message by message:
        a message it refuses is logged and dropped, as it would be refused forever."""
        try:
            self.store.store(parsed)
            self._count(parsed)
            return
        except exc.DBAPIError as error:
            if _transient(error):
                raise
        for one in parsed:
            try:
                self.store.store([one])
                self._count([one])
            except exc.DBAPIError as error:
                if _transient(error):
                    raise
                log.error("the database refused a message from %s: %s", one[0].device_id, str(error.orig)[:300])

    def _count(self, stored: Sequence[tuple[Event | Status, int]]) -> None:
        events = sum(isinstance(message, Event) for message, _ in stored)
        self.stored_events += events
        self.stored_statuses += len(stored) - events

    def _acknowledge(self, batch: list[Received]) -> None:
        for item in batch:
            if item.qos > 0 and item.connection == self._connection:
                self._client.ack(item.mid, item.qos)
