"""The forwarder against the real broker (Mosquitto on 127.0.0.1:1883) and real databases (PostgreSQL on
127.0.0.1:5432, and the SQLite default): events stored once, devices' states, nothing lost across a restart or
a database outage, bad payloads skipped. In-process forwarders run on threads; the ``slow`` ones are processes.

Every test uses its own device ids, shared-subscription group and client ids, and ends the broker sessions it
made, so tests never see each other's messages (nor leave queues behind in the broker)."""

from __future__ import annotations

import contextlib
import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import yaml
from sqlalchemy import select

from emotion_detector.__main__ import main
from emotion_detector.edge.forwarder import EventStore, Forwarder, ForwarderOptions
from emotion_detector.edge.messages import DeviceState, Event, EventType, Status, events_topic, status_topic
from emotion_detector.edge.models import Device, EdgeEvent
from emotion_detector.edge.mqtt import Broker
from emotion_detector.local_run import read_procfile, wanted_processes
from emotion_detector.settings import Settings
from emotion_detector.videos.db import migrate
from tests.conftest import ROOT, free_port, start_python, stop, wait_until
from tests.edge.conftest import mosquitto
from tests.videos.conftest import POSTGRES_ADMIN, new_postgres_database

BROKER = Broker.from_url("mqtt://127.0.0.1:1883")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    with contextlib.nullcontext(f"sqlite:///{tmp_path / 'edge.db'}") if request.param == "sqlite" else new_postgres_database() as url:
        migrate(url)
        yield url


def end_sessions(*client_ids: str, broker: Broker = BROKER) -> None:
    """Connecting with a clean start and no session expiry drops a client's session and its queued messages."""
    for client_id in client_ids:
        client = broker.client(client_id)
        client.connect(broker.host, broker.port, clean_start=True)
        client.loop_start()
        client.disconnect()
        client.loop_stop()


@pytest.fixture
def publisher() -> Iterator[Publisher]:
    publisher = Publisher()
    yield publisher
    publisher.close()


class Publisher:
    """A device's side: QoS 1 publishes, confirmed by the broker; clears the retained statuses it left."""

    def __init__(self, broker: Broker = BROKER) -> None:
        self.client = broker.client(unique("test-publisher"))
        self.client.connect(broker.host, broker.port)
        self.client.loop_start()
        self.status_topics: set[str] = set()

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(timeout=10)

    def events(self, device_id: str, count: int, start_ms: int = 1_000) -> list[Event]:
        events = [event(device_id, seq, start_ms + seq) for seq in range(count)]
        for item in events:
            self.publish(events_topic(device_id), item.payload())
        return events

    def status(self, device_id: str, state: DeviceState, timestamp_ms: int, **fields) -> None:
        self.status_topics.add(status_topic(device_id))
        message = Status(device_id=device_id, state=state, timestamp_ms=timestamp_ms, version="1.2.3", **fields)
        self.publish(status_topic(device_id), message.payload(), retain=True)

    def close(self) -> None:
        for topic in self.status_topics:
            self.publish(topic, b"", retain=True)
        self.client.disconnect()
        self.client.loop_stop()


def event(device_id: str, seq: int, timestamp_ms: int) -> Event:
    face = {"box_xyxy": [1, 2, 30, 40], "emotion": {"label": "happy", "score": 0.9}}
    return Event(
        seq=seq, device_id=device_id, type=EventType.TRACK_UPDATE, timestamp_ms=timestamp_ms, track_id=1, seen_ms=seq * 100, face=face
    )


@contextlib.contextmanager
def forwarder(database_url: str, client_id: str, group: str, broker: Broker = BROKER) -> Iterator[Forwarder]:
    """A forwarder on a thread of this process, subscribed when this yields."""
    running = Forwarder(broker, EventStore(database_url), ForwarderOptions(group=group, client_id=client_id, session_expiry_s=120))
    stop_event = threading.Event()
    thread = threading.Thread(target=running.run, args=(stop_event,), daemon=True)
    thread.start()
    try:
        assert running.subscribed.wait(10), "the forwarder did not subscribe"
        yield running
    finally:
        stop_event.set()
        thread.join(10)
        assert not thread.is_alive()


def stored_events(database_url: str, device_id: str) -> list[EdgeEvent]:
    with EventStore(database_url).engine.connect() as connection:
        return list(connection.execute(select(EdgeEvent).where(EdgeEvent.device_id == device_id).order_by(EdgeEvent.seq)).all())


def device(database_url: str, device_id: str) -> Device | None:
    with EventStore(database_url).engine.connect() as connection:
        return connection.execute(select(Device).where(Device.device_id == device_id)).one_or_none()


def wait_for_events(database_url: str, device_id: str, count: int, timeout_s: float = 20) -> None:
    wait_until(lambda: len(stored_events(database_url, device_id)) >= count, timeout_s, f"{count} events of {device_id}")


def test_events_delivered_twice_are_stored_once(database_url, publisher):
    device_id, client_id = unique("dev"), unique("fwd")
    try:
        with forwarder(database_url, client_id, unique("group")):
            sent = publisher.events(device_id, 20)
            for item in sent[:10]:  # the same events again, as after a broker redelivery or a device's retry
                publisher.publish(events_topic(device_id), item.payload())
            wait_for_events(database_url, device_id, 20)
            time.sleep(0.5)  # time for the duplicates to arrive too
    finally:
        end_sessions(client_id)
    rows = stored_events(database_url, device_id)
    assert [row.event_id for row in rows] == [item.event_id for item in sent]
    assert (rows[0].emotion, rows[0].face, rows[0].timestamp_ms, rows[0].type) == ("happy", sent[0].face, 1_000, EventType.TRACK_UPDATE)
    seen = device(database_url, device_id)
    assert seen is not None and (seen.state, seen.last_seen_ms) == (DeviceState.ONLINE, 1_019)  # its events mark it


def test_statuses_set_the_device_state_and_last_seen_never_moves_back(database_url, publisher):
    device_id, client_id = unique("dev"), unique("fwd")
    try:
        with forwarder(database_url, client_id, unique("group")):
            publisher.status(device_id, DeviceState.ONLINE, 5_000, dropped_events=3)
            wait_until(lambda: device(database_url, device_id) is not None, 10, "the device row")
            assert (device(database_url, device_id).state, device(database_url, device_id).dropped_events) == (DeviceState.ONLINE, 3)
            publisher.events(device_id, 1, start_ms=9_000)
            wait_for_events(database_url, device_id, 1)
            # The last will: made when the device connected, so older than its events; it still means offline.
            publisher.status(device_id, DeviceState.OFFLINE, 4_999)
            wait_until(lambda: device(database_url, device_id).state == DeviceState.OFFLINE, 10, "offline")
    finally:
        end_sessions(client_id)
    seen = device(database_url, device_id)
    assert (seen.last_seen_ms, seen.version, seen.dropped_events) == (9_000, "1.2.3", 3)


def test_bad_payloads_are_skipped_and_the_forwarder_goes_on(database_url, publisher, caplog):
    device_id, client_id = unique("dev"), unique("fwd")
    good = event(device_id, 0, 1_000)
    bad = {
        "not JSON": b"{oops",
        "missing fields": b'{"event_id": "x"}',
        "another device's id": event(unique("other"), 0, 1_000).payload(),
        "too large": good.model_copy(update={"face": {"pad": "x" * 9000}}).model_dump_json().encode(),
        "a status on the events topic": Status(device_id=device_id, state=DeviceState.ONLINE, timestamp_ms=1, version="1").payload(),
    }
    try:
        with forwarder(database_url, client_id, unique("group")) as running:
            for payload in bad.values():
                publisher.publish(events_topic(device_id), payload)
            publisher.publish(status_topic(device_id), b"[]")
            publisher.publish(events_topic(device_id), good.payload())
            wait_for_events(database_url, device_id, 1)
            assert running.stored_events == 1
    finally:
        end_sessions(client_id)
    assert [row.event_id for row in stored_events(database_url, device_id)] == [good.event_id]
    assert device(database_url, device_id).last_seen_ms == 1_000
    assert len(re.findall("skipped a message on emotion-detector/", caplog.text)) == len(bad) + 1


def test_events_published_while_the_forwarder_is_stopped_are_stored_when_it_is_back(database_url, publisher):
    """A persistent session: the broker queues QoS 1 events for the stopped forwarder's client id."""
    device_id, client_id, group = unique("dev"), unique("fwd"), unique("group")
    try:
        with forwarder(database_url, client_id, group):
            publisher.events(device_id, 5)
            wait_for_events(database_url, device_id, 5)
        sent = publisher.events(device_id, 100, start_ms=2_000)  # nobody is connected
        assert len(stored_events(database_url, device_id)) == 5
        with forwarder(database_url, client_id, group):
            wait_for_events(database_url, device_id, 105)
    finally:
        end_sessions(client_id)
    assert {row.event_id for row in stored_events(database_url, device_id)} >= {item.event_id for item in sent}


def allow_connections(database_url: str, allowed: bool) -> None:
    """PostgreSQL refusing every connection to one database, as when it is down, and back."""
    name = database_url.rsplit("/", 1)[1]
    with psycopg.connect(POSTGRES_ADMIN, autocommit=True) as admin:
        admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS {str(allowed).lower()}')
        if not allowed:
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))


@pytest.mark.slow  # waits through the forwarder's backoff
def test_events_wait_unacknowledged_while_the_database_is_down(publisher, caplog):
    device_id, client_id, group = unique("dev"), unique("fwd"), unique("group")
    with new_postgres_database() as url:
        migrate(url)
        try:
            with forwarder(url, client_id, group) as running:
                allow_connections(url, False)
                publisher.events(device_id, 20)
                time.sleep(1.5)
                assert running.stored_events == 0 and "database unavailable (OperationalError)" in caplog.text
                allow_connections(url, True)
                wait_for_events(url, device_id, 20, timeout_s=30)  # the same forwarder, once it is back
                # Stopped while the database is down: what it holds was never acknowledged, so the broker
                # delivers it again to the next forwarder with this client id.
                allow_connections(url, False)
                sent = publisher.events(device_id, 20, start_ms=5_000)
                time.sleep(1)
            allow_connections(url, True)
            assert len(stored_events(url, device_id)) == 20
            with forwarder(url, client_id, group):
                wait_for_events(url, device_id, 40)
        finally:
            allow_connections(url, True)
            end_sessions(client_id)
        assert {item.event_id for item in sent} <= {row.event_id for row in stored_events(url, device_id)}


@pytest.mark.slow  # a broker of its own, restarted
def test_the_forwarder_reconnects_after_a_broker_restart_and_loses_nothing(tmp_path, caplog):
    """Events the forwarder held unacknowledged (the database was down) when the broker went away are
    stored; the session survives the broker's restart (its persistence file), and new events flow again."""
    caplog.set_level(logging.INFO, logger="emotion_detector.edge.forwarder")
    port, device_id, client_id = free_port(), unique("dev"), unique("fwd")
    broker = Broker.from_url(f"mqtt://127.0.0.1:{port}")
    persistence = ["persistence true", f"persistence_location {tmp_path}/"]
    with new_postgres_database() as url, contextlib.ExitStack() as stack:
        migrate(url)
        first_broker = stack.enter_context(mosquitto(tmp_path, port, *persistence))
        running = stack.enter_context(forwarder(url, client_id, "group", broker))
        publisher = Publisher(broker)
        sent = publisher.events(device_id, 10)
        wait_for_events(url, device_id, 10)
        allow_connections(url, False)
        sent += publisher.events(device_id, 10, start_ms=5_000)
        publisher.close()
        time.sleep(0.5)  # delivered; the forwarder cannot store them yet
        stop(first_broker)
        wait_until(lambda: not running.subscribed.is_set(), 10, "the forwarder to notice")
        stack.enter_context(mosquitto(tmp_path, port, *persistence))
        allow_connections(url, True)
        assert running.subscribed.wait(30), "the forwarder did not reconnect"
        publisher = Publisher(broker)
        sent += publisher.events(device_id, 10, start_ms=9_000)
        publisher.close()
        wait_for_events(url, device_id, 30)
        assert "session resumed" in caplog.text
        assert {row.event_id for row in stored_events(url, device_id)} == {item.event_id for item in sent}


@pytest.mark.slow  # two forwarder processes
def test_two_forwarders_split_the_events_and_store_each_once(tmp_path, publisher):
    device_id, group = unique("dev"), unique("group")
    client_ids = [unique("fwd"), unique("fwd")]
    with new_postgres_database() as url:
        migrate(url)
        logs = [tmp_path / f"{client_id}.log" for client_id in client_ids]
        env = {"EMOTION_DATABASE_URL": url}
        args = ["-m", "emotion_detector", "forward", "--mqtt", "mqtt://127.0.0.1:1883", "--group", group]
        processes = [start_python([*args, "--client-id", client_id], log, env) for client_id, log in zip(client_ids, logs, strict=True)]
        try:
            for process, log in zip(processes, logs, strict=True):
                wait_until(lambda log=log: "subscribed to" in log.read_text(), 30, "a forwarder", process)
            sent = publisher.events(device_id, 400)
            wait_for_events(url, device_id, 400, timeout_s=60)
        finally:
            for process in processes:
                process.send_signal(signal.SIGTERM)  # once: a second one during the interpreter's exit would kill it
            for process in processes:
                process.wait(timeout=20)
            end_sessions(*client_ids)
        assert [process.returncode for process in processes] == [0, 0]
        shares = [int(re.findall(r"stored (\d+) events", log.read_text())[-1]) for log in logs]
        assert all(share > 0 for share in shares) and sum(shares) == 400, shares  # each event went to one of them
        assert sorted(row.event_id for row in stored_events(url, device_id)) == sorted(item.event_id for item in sent)


def test_make_run_starts_the_forwarder_only_with_a_broker():
    processes = read_procfile(ROOT / "Procfile")
    assert processes["forwarder"] == "python -m emotion_detector forward"
    assert "forwarder" not in wanted_processes(processes, Settings(mqtt_url=""))
    assert wanted_processes(processes, Settings(mqtt_url="mqtt://localhost:1883")) == processes


def test_compose_runs_a_broker_and_a_forwarder_on_the_app_image():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert services["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    forwarder_service, web = services["forwarder"], services["web"]
    assert forwarder_service["build"] == web["build"]
    assert forwarder_service["command"][-1] == "forward"
    assert forwarder_service["environment"]["EMOTION_MQTT_URL"].endswith("@mosquitto:1883")  # with the broker's account
    assert forwarder_service["environment"]["EMOTION_DATABASE_URL"] == web["environment"]["EMOTION_DATABASE_URL"]
    config = ROOT / Path(services["mosquitto"]["volumes"][0].split(":")[0])
    assert "listener 1883" in config.read_text()


def test_a_message_the_database_refuses_is_dropped_and_the_rest_of_its_batch_stored(publisher, caplog):
    """PostgreSQL refuses a NUL character in text (valid JSON and a valid event otherwise): retrying would
    never succeed, so it is logged and acknowledged; the events around it are stored."""
    device_id, client_id = unique("dev"), unique("fwd")
    with new_postgres_database() as url:
        migrate(url)
        try:
            with forwarder(url, client_id, unique("group")):
                refused = event(device_id, 1, 1_001).model_copy(update={"event_id": "nul\x00byte"})
                good = [event(device_id, 0, 1_000), event(device_id, 2, 1_002)]
                for payload in (good[0].payload(), refused.payload(), good[1].payload()):
                    publisher.publish(events_topic(device_id), payload)
                wait_for_events(url, device_id, 2)
                time.sleep(0.3)
        finally:
            end_sessions(client_id)
        assert [row.event_id for row in stored_events(url, device_id)] == [item.event_id for item in good]
        assert "the database refused a message from" in caplog.text


@pytest.mark.parametrize(
    ("args", "message"),
    [([], "no MQTT broker: pass --mqtt"), (["--mqtt", "http://broker"], "mqtt:// or mqtts://")],
)
def test_forward_without_a_usable_broker_says_why(monkeypatch, capsys, args, message):
    monkeypatch.delenv("EMOTION_MQTT_URL", raising=False)
    assert main(["forward", *args]) == 2
    assert message in capsys.readouterr().err
