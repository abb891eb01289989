"""What the dashboard reads from the edge tables (DESIGN.md §2 "Dashboard"): devices with their event counts,
events filtered and bounded, the expression mix per time bucket, and the rows that arrived after a given one
(the live feed). Read only: the forwarder writes these tables.

Each query returns the schema the API answers with (``to_json``); nothing else assembles these dicts."""

from __future__ import annotations

from collections.abc import Collection
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from emotion_detector.edge.messages import DeviceState, Event
from emotion_detector.edge.models import Device, EdgeEvent

DEFAULT_EVENTS_LIMIT = 100
MAX_EVENTS_LIMIT = 1000


class _Schema(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class DeviceSummary(_Schema):
    device_id: str
    state: DeviceState
    last_seen_ms: int
    events: int  # stored events of this device


class DeviceList(_Schema):
    devices: list[DeviceSummary]


class EventList(_Schema):
    events: list[Event]  # newest last

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)


class MixWindow(StrEnum):
    """The charts' time windows, each with its bucket size."""

    HOUR = "hour"
    DAY = "day"

    @property
    def duration_ms(self) -> int:
        return 3_600_000 if self is MixWindow.HOUR else 86_400_000

    @property
    def bucket_ms(self) -> int:
        # 60 one-minute bars for an hour, 48 half-hour bars for a day: both readable at a page's width.
        return 60_000 if self is MixWindow.HOUR else 1_800_000


class MixBucket(_Schema):
    start_ms: int
    counts: dict[str, int]  # expression label → events in the bucket (labels with none left out)


class ExpressionMix(_Schema):
    """``GET /api/v1/devices/{id}/mix``: every bucket of the window, oldest first, empty ones included."""

    device_id: str
    window: MixWindow
    bucket_ms: int
    start_ms: int
    end_ms: int
    buckets: list[MixBucket]


def devices(session: Session, only: Collection[str] | None = None) -> DeviceList:
    """Every device (or those named in ``only``) with its number of stored events, by device id."""
    counts = select(EdgeEvent.device_id, func.count().label("events")).group_by(EdgeEvent.device_id)
    if only is not None:
        counts = counts.where(EdgeEvent.device_id.in_(only))
    table = counts.subquery()
    query = select(Device, func.coalesce(table.c.events, 0)).outerjoin(table, table.c.device_id == Device.device_id)
    if only is not None:
        query = query.where(Device.device_id.in_(only))
    rows = session.execute(query.order_by(Device.device_id)).all()
    return DeviceList(devices=[DeviceSummary(device_id=d.device_id, state=d.state, last_seen_ms=d.last_seen_ms, events=n) for d, n in rows])


def device_exists(session: Session, device_id: str) -> bool:
    return session.get(Device, device_id) is not None


def events(session: Session, device_id: str | None = None, since_ms: int | None = None, limit: int = DEFAULT_EVENTS_LIMIT) -> EventList:
    """The newest ``limit`` events (of one device, at or after ``since_ms`` when given), oldest first.

    Ordered by the device's clock (``timestamp_ms``), not by arrival: events a device queued while offline
    arrive late but belong where they happened."""
    if not 1 <= limit <= MAX_EVENTS_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_EVENTS_LIMIT}, got {limit}")
    query = select(EdgeEvent)
    if device_id is not None:
        query = query.where(EdgeEvent.device_id == device_id)
    if since_ms is not None:
        query = query.where(EdgeEvent.timestamp_ms >= since_ms)
    newest = session.scalars(query.order_by(EdgeEvent.timestamp_ms.desc(), EdgeEvent.id.desc()).limit(limit)).all()
    return EventList(events=[as_event(row) for row in reversed(newest)])


def as_event(row: EdgeEvent) -> Event:
    """A stored event as the contract's event object (what the device sent)."""
    return Event(
        event_id=row.event_id,
        seq=row.seq,
        device_id=row.device_id,
        type=row.type,
        timestamp_ms=row.timestamp_ms,
        track_id=row.track_id,
        seen_ms=row.seen_ms,
        face=row.face,
    )


def arrived_after(session: Session, last_id: int, limit: int) -> list[tuple[int, Event]]:
    """Events stored after row ``last_id``, in arrival order, with their row ids (the live feed's cursor)."""
    rows = session.scalars(select(EdgeEvent).where(EdgeEvent.id > last_id).order_by(EdgeEvent.id).limit(limit)).all()
    return [(row.id, as_event(row)) for row in rows]


def newest_ids(session: Session, count: int) -> list[int]:
    """The row ids of the ``count`` last arrived events, oldest first (the live feed's backlog)."""
    ids = session.scalars(select(EdgeEvent.id).order_by(EdgeEvent.id.desc()).limit(count)).all()
    return list(reversed(ids))


def last_id(session: Session) -> int:
    return session.scalar(select(func.max(EdgeEvent.id))) or 0


def device_states(session: Session) -> dict[str, tuple[DeviceState, int]]:
    """Each device's state and last seen time, to notice changes between two looks."""
    return {
        device_id: (state, seen) for device_id, state, seen in session.execute(select(Device.device_id, Device.state, Device.last_seen_ms))
    }


def expression_mix(session: Session, device_id: str, window: MixWindow, now_ms: int) -> ExpressionMix:
    """Events per expression per bucket over the window that ends with the bucket holding ``now_ms``.

    Buckets start on whole multiples of their size (whole minutes, whole half hours, UTC), so that a chart's
    bars stay put from one look to the next. Counted in the database: a day of a busy device is many rows."""
    bucket_ms = window.bucket_ms
    count = window.duration_ms // bucket_ms
    start_ms = (now_ms // bucket_ms - count + 1) * bucket_ms
    end_ms = start_ms + count * bucket_ms
    # Floor division ('/' would be true division in SQLAlchemy 2): plain integer division in SQLite and PostgreSQL.
    bucket = ((EdgeEvent.timestamp_ms - start_ms) // bucket_ms).label("bucket")
    rows = session.execute(
        select(bucket, EdgeEvent.emotion, func.count())
        .where(EdgeEvent.device_id == device_id, EdgeEvent.timestamp_ms >= start_ms, EdgeEvent.timestamp_ms < end_ms)
        .group_by(bucket, EdgeEvent.emotion)
    ).all()
    counts: list[dict[str, int]] = [{} for _ in range(count)]
    for index, emotion, n in rows:
        label = emotion or "unknown"  # an event whose face carried no expression
        counts[int(index)][label] = counts[int(index)].get(label, 0) + n
    buckets = [MixBucket(start_ms=start_ms + i * bucket_ms, counts=c) for i, c in enumerate(counts)]
    return ExpressionMix(device_id=device_id, window=window, bucket_ms=bucket_ms, start_ms=start_ms, end_ms=end_ms, buckets=buckets)
