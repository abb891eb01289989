"""The MQTT wire contract of edge mode (DESIGN.md §2 "Edge"): topics and the payloads, as pydantic models.

Both sides use these models: the edge command builds its payloads with them, the forwarder validates what it
receives with them, and the tests check the broker's messages against them."""

from __future__ import annotations

import uuid
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

TOPIC_PREFIX = "emotion-detector"
MAX_PAYLOAD_BYTES = 8 * 1024  # events stay small: no images, one face (Frigate users' complaint: 11 KB payloads)
EVENTS_QOS = 1
STATUS_QOS = 1
VIEW_QOS = 1
DEVICE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # one topic level: no '/', '+', '#'


class DeviceState(StrEnum):
    ONLINE = "online"
    OFFLINE = "offline"


class EventType(StrEnum):
    TRACK_UPDATE = "track_update"  # at most one per track per --interval-s while the face is in view
    TRACK_END = "track_end"  # once, when the face has left the view


def status_topic(device_id: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/status"


def events_topic(device_id: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/events"


def view_topic(device_id: str) -> str:
    return f"{TOPIC_PREFIX}/{device_id}/view"


# What the forwarder subscribes to: every device's events and status.
ALL_EVENTS = f"{TOPIC_PREFIX}/+/events"
ALL_STATUS = f"{TOPIC_PREFIX}/+/status"


def device_of(topic: str) -> str:
    """The device id in ``emotion-detector/{device_id}/...``."""
    parts = topic.split("/")
    if len(parts) != 3 or parts[0] != TOPIC_PREFIX:
        raise ValueError(f"not an edge topic: {topic!r}")
    return parts[1]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def payload(self) -> bytes:
        data = self.model_dump_json(exclude_none=True).encode()
        if len(data) >= MAX_PAYLOAD_BYTES:
            raise ValueError(f"{type(self).__name__} payload is {len(data)} bytes; the contract allows under {MAX_PAYLOAD_BYTES}")
        return data


class Status(_Message):
    """``emotion-detector/{device_id}/status``: retained, QoS 1, and the MQTT last will (state offline)."""

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    state: DeviceState
    timestamp_ms: int = Field(ge=0)
    version: str
    # Events the device's on-disk queue dropped (oldest first) while the broker was unreachable, since it
    # started: a receiver can tell that the gap in ``seq`` is a known loss.
    dropped_events: int | None = Field(None, ge=0)


class Event(_Message):
    """``emotion-detector/{device_id}/events``: QoS 1, not retained, under 8 KB, no images."""

    event_id: str = Field(default_factory=lambda: str(uuid.uuid4()), min_length=1, max_length=64)
    seq: int = Field(ge=0)  # one more per event of a device run
    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    type: EventType
    timestamp_ms: int = Field(ge=0)  # wall clock (ms since the Unix epoch) of the frame the event describes
    track_id: int = Field(ge=0)
    seen_ms: int = Field(ge=0)  # how long the track has been in view
    face: dict[str, Any]  # the face object of DESIGN.md §2: the track's smoothed state

    @property
    def emotion(self) -> str | None:
        emotion = self.face.get("emotion")
        return emotion.get("label") if isinstance(emotion, dict) else None


class View(_Message):
    """``emotion-detector/{device_id}/view``: retained, QoS 1, what the device sees now - for dashboards that
    show a device's latest state (Home Assistant's sensors) rather than its history of events. Published when it
    changes, at most once per ``--interval-s``, and with no faces when the device stops looking.

    Each face in view counts under its top (smoothed) expression, as on ``/dashboard``."""

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    timestamp_ms: int = Field(ge=0)  # wall clock of the frame described
    faces_in_view: int = Field(ge=0)
    dominant_emotion: str | None  # the most frequent expression in view; None: no faces
    # Every expression label → the share (0..1) of the faces in view showing it; all 0 when there are none.
    emotion_shares: dict[str, float]

    def payload(self) -> bytes:
        # None is sent as null (not left out) so a template can tell "no faces" from a malformed payload.
        data = self.model_dump_json().encode()
        if len(data) >= MAX_PAYLOAD_BYTES:
            raise ValueError(f"View payload is {len(data)} bytes; the contract allows under {MAX_PAYLOAD_BYTES}")
        return data
