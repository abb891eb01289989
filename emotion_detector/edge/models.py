"""Database schema of edge mode: devices and their events, as the forwarder stores them (same database as
video jobs; migration 0003)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from emotion_detector.edge.messages import DeviceState, EventType
from emotion_detector.videos.models import Base, state_column


class Device(Base):
    """One edge device, from its latest ``status`` message (and the events it sent)."""

    __tablename__ = "edge_devices"

    device_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[DeviceState] = mapped_column(state_column(DeviceState))
    last_seen_ms: Mapped[int] = mapped_column(BigInteger)  # the newest status or event timestamp from it
    version: Mapped[str | None] = mapped_column(String(64))
    dropped_events: Mapped[int] = mapped_column(Integer, default=0)  # as its latest status reported


class EdgeEvent(Base):
    """One event (DESIGN.md §2 "Edge"); ``event_id`` is unique, so an event delivered twice is stored once."""

    __tablename__ = "edge_events"
    __table_args__ = (Index("ix_edge_events_device_time", "device_id", "timestamp_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)  # arrival order (live feed)
    event_id: Mapped[str] = mapped_column(String(64), unique=True)
    device_id: Mapped[str] = mapped_column(String(64))
    seq: Mapped[int] = mapped_column(BigInteger)
    type: Mapped[EventType] = mapped_column(state_column(EventType))
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    track_id: Mapped[int] = mapped_column(Integer)
    seen_ms: Mapped[int] = mapped_column(BigInteger)
    emotion: Mapped[str | None] = mapped_column(String(16))  # the face's label, for the dashboard's charts
    face: Mapped[dict[str, Any]] = mapped_column(JSON)
    received_ms: Mapped[int] = mapped_column(BigInteger)
