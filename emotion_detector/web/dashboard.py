"""The edge dashboard (DESIGN.md §2 "Dashboard"): its page and the JSON it reads.

GET /dashboard                              devices, a live feed of their events, expression mix charts
GET /api/v1/devices                         {"devices": [{device_id, state, last_seen_ms, events}]}
GET /api/v1/events?device_id=&since_ms=&limit=   {"events": [event...]}, newest last (limit 1..1000, default 100)
GET /api/v1/devices/<id>/mix?window=hour|day&end_ms=   events per expression per minute (hour) or half hour (day)
GET /api/v1/events/stream?backlog=          server-sent events: ``event`` (an event), ``device`` (a device's
                                            state, last seen time or count changed); honours Last-Event-ID
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from flask import Blueprint, Response, current_app, render_template, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector.edge import queries
from emotion_detector.edge.messages import DEVICE_ID_PATTERN, Event
from emotion_detector.edge.queries import MAX_EVENTS_LIMIT, DeviceList, DeviceSummary, EventList, ExpressionMix, MixWindow
from emotion_detector.web import services
from emotion_detector.web.openapi import Content, operation, parse_query, parsed
from emotion_detector.web.security import api_error

log = logging.getLogger(__name__)
blueprint = Blueprint("dashboard", __name__)
MAX_TIME_MS = 2**63 - 1  # a BIGINT: past it PostgreSQL would refuse the statement
MAX_BACKLOG = 100
TimeMs = Annotated[int, Field(ge=0, le=MAX_TIME_MS)]


@dataclass(frozen=True)
class StreamTiming:
    """How the live feed's generator paces itself (``app.config["DASHBOARD_STREAM"]`` replaces it in tests)."""

    poll_s: float = 0.5  # how often it looks for new rows: the feed's latency
    heartbeat_s: float = 15.0  # a comment when nothing else was sent, so proxies keep the connection open
    max_s: float = 300.0  # then it ends and EventSource reconnects (Last-Event-ID): no worker is held forever
    retry_ms: int = 1000  # how long EventSource waits before it reconnects
    batch: int = 500  # rows read per look: a long-disconnected client catches up in steps


# ---- query parameters --------------------------------------------------------------------------------


class _Query(BaseModel):
    model_config = ConfigDict(frozen=True)


class EventsQuery(_Query):
    device_id: str | None = Field(None, pattern=DEVICE_ID_PATTERN)
    since_ms: TimeMs | None = None
    limit: int = Field(queries.DEFAULT_EVENTS_LIMIT, ge=1, le=MAX_EVENTS_LIMIT)


class MixQuery(_Query):
    window: MixWindow = MixWindow.HOUR
    # The window ends with the bucket holding it (default: now); a bucket past it must still be a BIGINT.
    end_ms: int | None = Field(None, ge=0, le=MAX_TIME_MS - MixWindow.DAY.bucket_ms)


class StreamQuery(_Query):
    backlog: int = Field(20, ge=0, le=MAX_BACKLOG)  # recent events sent first on a fresh connection
    last_event_id: int | None = Field(None, ge=0, le=MAX_TIME_MS)  # the header, or this for clients that cannot set it


def _sessions() -> sessionmaker[Session]:
    return services().videos.sessions  # the edge tables live in the video jobs' database


# ---- page and JSON -----------------------------------------------------------------------------------


@blueprint.get("/dashboard")
def page() -> ResponseReturnValue:
    return render_template("dashboard.html")


@blueprint.get("/api/v1/devices")
@operation(
    "The edge devices: state, last seen, events stored", tag="dashboard", responses={200: ("The devices", DeviceList)}, errors=(503,)
)
def devices() -> ResponseReturnValue:
    with _sessions()() as session:
        return queries.devices(session).to_json()


@blueprint.get("/api/v1/events")
@operation(
    "Stored events, newest last (optionally of one device, after a time)",
    tag="dashboard",
    query=EventsQuery,
    responses={200: ("The events", EventList)},
    errors=(503,),
)
def events() -> ResponseReturnValue:
    query = parsed(EventsQuery)
    with _sessions()() as session:
        return queries.events(session, query.device_id, query.since_ms, query.limit).to_json()


@blueprint.get("/api/v1/devices/<device_id:device_id>/mix")
@operation(
    "A device's expression mix: events per expression per minute (hour) or half hour (day)",
    tag="dashboard",
    query=MixQuery,
    responses={200: ("The mix", ExpressionMix)},
    errors=(503,),
)
def mix(device_id: str) -> ResponseReturnValue:
    query = parsed(MixQuery)
    end_ms = query.end_ms if query.end_ms is not None else int(time.time() * 1000)
    with _sessions()() as session:
        if not queries.device_exists(session, device_id):
            return api_error("not_found", f"no device with id {device_id!r}", 404)
        return queries.expression_mix(session, device_id, query.window, end_ms).to_json()


# ---- live feed ---------------------------------------------------------------------------------------


@blueprint.get("/api/v1/events/stream")
@operation(
    "Live feed (server-sent events): 'event' (an event, its row id as the SSE id) and 'device' (a device changed); "
    "the Last-Event-ID header resumes after that id",
    tag="dashboard",
    query=StreamQuery,
    responses={
        200: (
            "The feed; it ends after a few minutes and EventSource reconnects",
            Content.event_stream({"event": Event, "device": DeviceSummary}),
        )
    },
    errors=(503,),
)
def stream() -> ResponseReturnValue:
    query = parsed(StreamQuery)
    if "Last-Event-ID" in request.headers:  # EventSource's reconnection names the last id it received
        query = parse_query(StreamQuery, request.args.to_dict() | {"last_event_id": request.headers["Last-Event-ID"]})
    timing = current_app.config.get("DASHBOARD_STREAM", StreamTiming())
    # The first look happens here, before the 200: a database that is down is a 503, not an empty stream.
    with _sessions()() as session:
        cursor = query.last_event_id
        if cursor is None:
            recent = queries.newest_ids(session, query.backlog)
            cursor = recent[0] - 1 if recent else queries.last_id(session)
        devices = queries.devices(session).devices
    # The generator runs after this view returns: it gets the session factory, not the app context.
    feed = live_feed(_sessions(), cursor, devices, timing)
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}  # no proxy may hold the events back
    return Response(feed, mimetype="text/event-stream", headers=headers)


def _message(kind: str, data: str, event_id: int | None = None) -> str:
    lines = [f"event: {kind}", *([f"id: {event_id}"] if event_id is not None else []), f"data: {data}"]
    return "\n".join(lines) + "\n\n"


def live_feed(sessions: sessionmaker[Session], cursor: int, devices: list[DeviceSummary], timing: StreamTiming) -> Iterator[str]:
    """Server-sent events: the cursor and the ``devices`` first, then events stored after row ``cursor`` as
    they come (each with its row id as the SSE id) and devices whose state, last seen time or event count
    changed.

    It looks for rows with an id past the last one sent every ``poll_s`` (under gunicorn's gevent workers
    the sleep yields to other greenlets); the page itself never polls. Ids are the forwarder's insertion
    order: one forwarder inserting in turn commits them in order, so none is skipped."""
    started_s = time.monotonic()
    yield f"retry: {timing.retry_ms}\n\n"
    # An id without data sets EventSource's Last-Event-ID without an event: a reconnection resumes from here
    # even when no event came in between (else it would get the backlog again).
    yield f"id: {cursor}\n\n"
    seen = {d.device_id: (d.state, d.last_seen_ms) for d in devices}
    for device in devices:
        yield _message("device", json.dumps(device.to_json()))
    last_sent_s = time.monotonic()
    while True:
        try:
            with sessions() as session:  # closed before yielding: a slow client holds no database connection
                arrived = queries.arrived_after(session, cursor, timing.batch)
                states = queries.device_states(session)
                changed = {d for d, state in states.items() if seen.get(d) != state} | {event.device_id for _, event in arrived}
                updates = queries.devices(session, changed).devices if changed else []
        except DBAPIError as exc:
            # The stream ends; EventSource reconnects from the last id, and gets a 503 while the outage lasts.
            log.warning("live feed ends: the database is unavailable (%s)", exc.orig)
            return
        messages = [_message("event", event.model_dump_json(exclude_none=True), row_id) for row_id, event in arrived]
        messages += [_message("device", json.dumps(device.to_json())) for device in updates]
        if arrived:
            cursor = arrived[-1][0]
        seen = states
        now_s = time.monotonic()
        if messages:
            yield "".join(messages)
            last_sent_s = now_s
        elif now_s - last_sent_s >= timing.heartbeat_s:
            yield ": heartbeat\n\n"
            last_sent_s = now_s
        if now_s - started_s >= timing.max_s:
            return
        if len(arrived) < timing.batch:  # a full batch: more are waiting, read them at once
            time.sleep(timing.poll_s)
