"""The dashboard's JSON and live feed (DESIGN.md §2 "Dashboard") on the app factory, on SQLite and on this
machine's PostgreSQL: rows are inserted as the forwarder would store them, through the ORM."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import delete, update
from sqlalchemy.orm import sessionmaker

from app import create_app
from emotion_detector.edge.messages import DeviceState, Event, EventType
from emotion_detector.edge.models import Device, EdgeEvent
from emotion_detector.labels import EMOTIONS
from emotion_detector.videos.db import engine_for
from emotion_detector.web import services
from emotion_detector.web.dashboard import StreamTiming, live_feed
from emotion_detector.web.security import SECURITY_HEADERS
from tests.videos.conftest import new_postgres_database

T0_MS = 1_789_999_200_000  # a whole hour (and minute): bucket boundaries are easy to name
UNREACHABLE_DATABASE = "postgresql+psycopg://postgres@127.0.0.1:9/test?connect_timeout=1"  # nothing listens there
EVENT_KEYS = {"event_id", "seq", "device_id", "type", "timestamp_ms", "track_id", "seen_ms", "face"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def app(request, tmp_path_factory) -> Iterator[Flask]:
    tmp = tmp_path_factory.mktemp("dashboard")
    with contextlib.nullcontext(f"sqlite:///{tmp / 'edge.db'}") if request.param == "sqlite" else new_postgres_database() as url:
        app = create_app({"model_server": "inprocess", "environment": "test", "instance_dir": tmp, "database_url": url})
        yield app
        with app.app_context():
            services().videos.sessions.kw["bind"].dispose()  # PostgreSQL drops the database after this


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    yield app.test_client()
    with app.app_context(), services().videos.sessions.begin() as session:
        session.execute(delete(EdgeEvent))
        session.execute(delete(Device))


@dataclass
class Store:
    app: Flask
    seq: int = 0

    def device(self, device_id: str, state: DeviceState = DeviceState.ONLINE, last_seen_ms: int = T0_MS) -> None:
        with self.app.app_context(), services().videos.sessions.begin() as session:
            session.merge(Device(device_id=device_id, state=state, last_seen_ms=last_seen_ms, version="1.0", dropped_events=0))

    def events(self, device_id: str, *at: tuple[int, str | None], track_id: int = 1) -> list[str]:
        """Events at (timestamp_ms, expression label) in this order; returns their event ids."""
        ids = []
        with self.app.app_context(), services().videos.sessions.begin() as session:
            for timestamp_ms, label in at:
                self.seq += 1
                face = {"box": [1.0, 2.0, 30.0, 40.0], "emotion": {"label": label, "confidence": 0.8, "uncertain": False}} if label else {}
                ids.append(f"{device_id}-{self.seq}")
                session.add(
                    EdgeEvent(
                        event_id=ids[-1],
                        device_id=device_id,
                        seq=self.seq,
                        type=EventType.TRACK_UPDATE,
                        timestamp_ms=timestamp_ms,
                        track_id=track_id,
                        seen_ms=1500,
                        emotion=label,
                        face=face,
                        received_ms=timestamp_ms + 20,
                    )
                )
        return ids


@pytest.fixture
def store(app: Flask, client: FlaskClient) -> Store:
    return Store(app)


# ---- devices and events -------------------------------------------------------------------------------


def test_devices_lists_each_device_with_its_state_last_seen_time_and_event_count(client, store):
    store.device("kiosk-2", DeviceState.OFFLINE, T0_MS - 5000)
    store.device("door-1")
    store.events("door-1", (T0_MS - 2000, "happy"), (T0_MS - 1000, "sad"))
    answer = client.get("/api/v1/devices")
    assert answer.status_code == 200
    assert answer.get_json() == {
        "devices": [
            {"device_id": "door-1", "state": "online", "last_seen_ms": T0_MS, "events": 2},
            {"device_id": "kiosk-2", "state": "offline", "last_seen_ms": T0_MS - 5000, "events": 0},
        ]
    }


def test_no_devices_is_an_empty_list(client):
    assert client.get("/api/v1/devices").get_json() == {"devices": []}
    assert client.get("/api/v1/events").get_json() == {"events": []}


def test_events_are_the_contract_s_event_objects_newest_last(client, store):
    store.device("door-1")
    # Stored out of order (the second arrived late from the device's queue): the answer is in device time.
    ids = store.events("door-1", (T0_MS, "happy"), (T0_MS - 60_000, "sad"), (T0_MS + 1000, None))
    events = client.get("/api/v1/events").get_json()["events"]
    assert [e["event_id"] for e in events] == [ids[1], ids[0], ids[2]]
    for event in events:
        assert set(event) == EVENT_KEYS
        Event.model_validate(event)  # what a device sent, as the contract says
    assert events[1]["face"]["emotion"]["label"] == "happy" and events[1]["type"] == "track_update"
    assert events[2]["face"] == {}


def test_events_filter_by_device_and_time_and_keep_the_newest_within_the_limit(client, store):
    store.device("door-1")
    store.device("kiosk-2")
    door = store.events("door-1", *[(T0_MS + i * 1000, "neutral") for i in range(10)])
    kiosk = store.events("kiosk-2", (T0_MS + 500, "angry"))

    def ids(query: str) -> list[str]:
        answer = client.get(f"/api/v1/events?{query}")
        assert answer.status_code == 200, answer.get_json()
        return [e["event_id"] for e in answer.get_json()["events"]]

    assert ids("") == [door[0], kiosk[0], *door[1:]]
    assert ids("device_id=door-1") == door
    assert ids("device_id=kiosk-2") == kiosk
    assert ids("device_id=nobody") == []
    assert ids(f"since_ms={T0_MS + 7000}") == door[7:]  # at or after
    assert ids("device_id=door-1&limit=3") == door[7:]  # the newest three, still oldest first
    assert ids(f"device_id=door-1&since_ms={T0_MS + 2000}&limit=2") == door[8:]
    assert ids("limit=1") == door[9:]
    assert ids("limit=1000") == [door[0], kiosk[0], *door[1:]]


@pytest.mark.parametrize(
    ("query", "names"),
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=-1", "limit"),
        ("limit=ten", "limit"),
        ("limit=2.5", "limit"),
        ("limit=", "limit"),
        ("limit=100000000000000000000000", "limit"),
        ("since_ms=-5", "since_ms"),
        ("since_ms=1e23", "since_ms"),
        ("since_ms=99999999999999999999999", "since_ms"),
        ("device_id=a/b", "device_id"),
        ("device_id=", "device_id"),
    ],
)
def test_bad_event_parameters_are_a_400_json_error_naming_the_parameter(client, query, names):
    answer = client.get(f"/api/v1/events?{query}")
    assert answer.status_code == 400 and answer.is_json
    error = answer.get_json()["error"]
    assert error["code"] == "bad_request" and error["message"].startswith(names)


# ---- expression mix -----------------------------------------------------------------------------------


def test_mix_of_the_last_hour_counts_events_per_minute_and_expression(client, store):
    store.device("door-1")
    store.device("kiosk-2")
    end_ms = T0_MS + 30_000  # inside the minute starting at T0: the window's last bucket
    store.events(
        "door-1",
        (T0_MS, "happy"),
        (T0_MS + 59_999, "happy"),
        (T0_MS + 10, "sad"),
        (T0_MS - 1, "neutral"),  # the minute before
        (T0_MS - 59 * 60_000, "fear"),  # the window's first minute
        (T0_MS - 59 * 60_000 - 1, "angry"),  # before the window
        (T0_MS + 60_000, "angry"),  # after it
        (T0_MS - 120_000, None),  # no expression
    )
    store.events("kiosk-2", (T0_MS, "disgust"))
    answer = client.get(f"/api/v1/devices/door-1/mix?window=hour&end_ms={end_ms}")
    assert answer.status_code == 200, answer.get_json()
    mix = answer.get_json()
    assert (mix["device_id"], mix["window"], mix["bucket_ms"]) == ("door-1", "hour", 60_000)
    assert (mix["start_ms"], mix["end_ms"]) == (T0_MS - 59 * 60_000, T0_MS + 60_000)
    assert [b["start_ms"] for b in mix["buckets"]] == [mix["start_ms"] + i * 60_000 for i in range(60)]
    counts = {b["start_ms"]: b["counts"] for b in mix["buckets"] if b["counts"]}
    assert counts == {
        T0_MS - 59 * 60_000: {"fear": 1},
        T0_MS - 120_000: {"unknown": 1},
        T0_MS - 60_000: {"neutral": 1},
        T0_MS: {"happy": 2, "sad": 1},
    }


def test_mix_of_the_last_day_uses_half_hours(client, store):
    store.device("door-1")
    store.events("door-1", *[(T0_MS - i * 600_000, EMOTIONS[i % 7]) for i in range(12)])  # every 10 min, 2 h back
    mix = client.get(f"/api/v1/devices/door-1/mix?window=day&end_ms={T0_MS}").get_json()
    assert mix["bucket_ms"] == 1_800_000 and len(mix["buckets"]) == 48
    assert mix["end_ms"] == T0_MS + 1_800_000
    totals = [sum(b["counts"].values()) for b in mix["buckets"]]
    assert totals[-1] == 1 and totals[-5:-1] == [2, 3, 3, 3] and sum(totals) == 12


def test_mix_defaults_to_the_hour_ending_now(client, store):
    store.device("door-1")
    now_ms = int(time.time() * 1000)
    store.events("door-1", (now_ms - 1000, "happy"))
    mix = client.get("/api/v1/devices/door-1/mix").get_json()
    assert mix["window"] == "hour" and mix["start_ms"] <= now_ms < mix["end_ms"]
    assert sum(sum(b["counts"].values()) for b in mix["buckets"]) == 1


@pytest.mark.parametrize(
    ("path", "status"),
    [("nobody/mix", 404), ("door-1/mix?window=week", 400), ("door-1/mix?end_ms=-1", 400), (f"door-1/mix?end_ms={2**63 - 1}", 400)],
)
def test_mix_of_an_unknown_device_or_window_is_a_json_error(client, store, path, status):
    store.device("door-1")
    answer = client.get(f"/api/v1/devices/{path}")
    assert answer.status_code == status and answer.is_json
    assert answer.get_json()["error"]["code"] == ("not_found" if status == 404 else "bad_request")


# ---- live feed ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    kind: str  # "event", "device", "heartbeat", "retry", "cursor" (an id alone)
    data: dict | None = None
    id: int | None = None


class Feed:
    """Reads a streaming response as server-sent events, message by message."""

    def __init__(self, chunks: Iterator[bytes]):
        self.chunks = chunks
        self.buffer = ""
        self.ended = False

    def next(self) -> Message | None:
        while "\n\n" not in self.buffer:
            chunk = next(self.chunks, None)
            if chunk is None:
                self.ended = True
                return None
            self.buffer += chunk.decode()
        block, self.buffer = self.buffer.split("\n\n", 1)
        if block.startswith(":"):
            return Message("heartbeat")
        fields = dict(line.split(": ", 1) for line in block.split("\n"))
        if "retry" in fields:
            return Message("retry", {"retry_ms": int(fields["retry"])})
        if "event" not in fields:
            return Message("cursor", id=int(fields["id"]))
        return Message(fields["event"], json.loads(fields["data"]), int(fields["id"]) if "id" in fields else None)

    def until(self, match, limit: int = 200) -> Message:
        for _ in range(limit):
            message = self.next()
            assert message is not None, "the stream ended first"
            if match(message):
                return message
        raise AssertionError("no such message")


def open_feed(client: FlaskClient, path: str = "/api/v1/events/stream", **headers: str) -> Feed:
    answer = client.get(path, buffered=False, headers=headers)
    assert answer.status_code == 200, answer.get_data()
    assert answer.mimetype == "text/event-stream" and answer.headers["Cache-Control"] == "no-store"
    return Feed(iter(answer.response))


@pytest.fixture
def fast_stream(app: Flask, monkeypatch) -> StreamTiming:
    timing = StreamTiming(poll_s=0.01, heartbeat_s=0.2, max_s=2.0, retry_ms=500, batch=3)
    monkeypatch.setitem(app.config, "DASHBOARD_STREAM", timing)
    return timing


def test_the_stream_sends_devices_then_events_as_they_are_stored(client, store, fast_stream):
    store.device("door-1", DeviceState.ONLINE, T0_MS)
    old = store.events("door-1", (T0_MS, "happy"))
    feed = open_feed(client, "/api/v1/events/stream?backlog=0")
    assert feed.next() == Message("retry", {"retry_ms": 500})
    cursor = feed.next()
    assert cursor.kind == "cursor" and cursor.id >= 1  # the old event's row: a reconnection resumes after it
    first = feed.next()
    assert first == Message("device", {"device_id": "door-1", "state": "online", "last_seen_ms": T0_MS, "events": 1})
    new = store.events("door-1", (T0_MS + 1000, "surprise"), (T0_MS + 2000, "sad"))
    received = [feed.until(lambda m: m.kind == "event") for _ in new]
    assert [m.data["event_id"] for m in received] == new  # not the one stored before the stream began
    assert old[0] not in [m.data["event_id"] for m in received]
    assert set(received[0].data) == EVENT_KEYS and received[0].data["face"]["emotion"]["label"] == "surprise"
    assert received[0].id < received[1].id
    # The device's count changed: a device message says so.
    assert feed.until(lambda m: m.kind == "device").data["events"] == 3


def test_the_stream_sends_a_device_going_online_and_a_new_device(client, store, fast_stream):
    store.device("door-1", DeviceState.OFFLINE, T0_MS)
    feed = open_feed(client)
    feed.until(lambda m: m.kind == "device")
    store.device("door-1", DeviceState.ONLINE, T0_MS + 5000)
    assert feed.until(lambda m: m.kind == "device").data == {
        "device_id": "door-1",
        "state": "online",
        "last_seen_ms": T0_MS + 5000,
        "events": 0,
    }
    store.device("kiosk-2", DeviceState.ONLINE, T0_MS + 6000)
    assert feed.until(lambda m: m.kind == "device").data["device_id"] == "kiosk-2"


def test_a_fresh_stream_starts_with_the_backlog_and_a_reconnection_resumes_after_last_event_id(client, store, fast_stream):
    store.device("door-1")
    ids = store.events("door-1", *[(T0_MS + i, "neutral") for i in range(8)])
    feed = open_feed(client, "/api/v1/events/stream?backlog=5")
    backlog = [feed.until(lambda m: m.kind == "event") for _ in range(5)]  # in batches of 3: catching up in steps
    assert [m.data["event_id"] for m in backlog] == ids[3:]
    resumed = open_feed(client, **{"Last-Event-ID": str(backlog[1].id)})
    assert [resumed.until(lambda m: m.kind == "event").data["event_id"] for _ in range(3)] == ids[5:]
    by_query = open_feed(client, f"/api/v1/events/stream?last_event_id={backlog[3].id}")
    assert by_query.until(lambda m: m.kind == "event").data["event_id"] == ids[7]


def test_a_stream_that_sent_no_event_still_gives_a_reconnection_its_place(client, store, fast_stream):
    store.device("door-1")
    store.events("door-1", (T0_MS, "happy"))
    cursor = open_feed(client, "/api/v1/events/stream?backlog=0").until(lambda m: m.kind == "cursor")
    new = store.events("door-1", (T0_MS + 1, "sad"))
    resumed = open_feed(client, **{"Last-Event-ID": str(cursor.id)})
    assert resumed.until(lambda m: m.kind == "cursor").id == cursor.id
    assert resumed.until(lambda m: m.kind == "event").data["event_id"] == new[0]  # the one in between, only


def test_an_idle_stream_sends_heartbeats_and_ends_after_its_maximum_duration(client, fast_stream):
    started_s = time.monotonic()
    feed = open_feed(client)
    messages = []
    while (message := feed.next()) is not None:
        messages.append(message.kind)
    assert feed.ended and fast_stream.max_s <= time.monotonic() - started_s < fast_stream.max_s + 1
    assert messages[0] == "retry" and 5 <= messages.count("heartbeat") <= 11  # one per 0.2 s of 2 s idle


@pytest.mark.parametrize("query", ["backlog=101", "backlog=-1", "last_event_id=abc"])
def test_bad_stream_parameters_are_a_400(client, query):
    answer = client.get(f"/api/v1/events/stream?{query}")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "bad_request"


def test_a_bad_last_event_id_header_is_a_400(client):
    answer = client.get("/api/v1/events/stream", headers={"Last-Event-ID": "-3"})
    assert answer.status_code == 400 and "last_event_id" in answer.get_json()["error"]["message"]


def test_a_database_outage_is_a_503_before_the_stream_and_ends_a_running_one(client, app, monkeypatch, fast_stream):
    unreachable = sessionmaker(engine_for(UNREACHABLE_DATABASE))
    with app.app_context():
        monkeypatch.setattr(services().videos, "sessions", unreachable)
    answer = client.get("/api/v1/events/stream")
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "database_unavailable"
    # Down once the stream runs: it ends (EventSource reconnects) rather than failing the worker.
    sent = list(live_feed(unreachable, 7, [], fast_stream))
    assert sent == ["retry: 500\n\n", "id: 7\n\n"]


# ---- the page -----------------------------------------------------------------------------------------


def test_the_page_loads_its_script_from_a_file_and_every_page_links_to_it(client):
    page = client.get("/dashboard")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<script src="/static/dashboard.js"></script>' in html
    assert "<script>" not in html and "style=" not in html  # the CSP allows neither
    for path in ("/", "/videos", "/dashboard"):
        assert 'href="/dashboard"' in client.get(path).get_data(as_text=True)
    assert client.get("/static/dashboard.js").status_code == 200


@pytest.mark.parametrize("path", ["/dashboard", "/api/v1/devices", "/api/v1/events", "/static/dashboard.js", "/api/v1/events?limit=0"])
def test_the_dashboard_s_responses_carry_the_security_headers(client, path):
    answer = client.get(path)
    for name, value in SECURITY_HEADERS.items():
        assert answer.headers.get(name) == value, (path, name)


def test_the_page_builds_no_markup_from_data():
    script = (Path(__file__).resolve().parents[2] / "emotion_detector" / "web" / "static" / "dashboard.js").read_text()
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script and "document.write" not in script


def test_a_stored_device_change_made_with_update_reaches_the_stream(client, store, fast_stream, app):
    """The forwarder updates device rows in place (UPDATE, not a new row): the stream notices that too."""
    store.device("door-1", DeviceState.ONLINE, T0_MS)
    feed = open_feed(client)
    feed.until(lambda m: m.kind == "device")
    with app.app_context(), services().videos.sessions.begin() as session:
        session.execute(update(Device).where(Device.device_id == "door-1").values(state=DeviceState.OFFLINE))
    assert feed.until(lambda m: m.kind == "device").data["state"] == "offline"
