"""URL converters for the ids in paths: an id that cannot be one is a 404 from routing and never reaches a
query (PostgreSQL refuses a NUL byte in text with an error that would read as a database outage: 503)."""

from __future__ import annotations

from flask import Flask
from werkzeug.routing import BaseConverter

from emotion_detector.edge.messages import DEVICE_ID_PATTERN


class VideoId(BaseConverter):
    regex = "[0-9a-f]{32}"  # uuid4().hex, as VideoService.create makes them


class DeviceId(BaseConverter):
    regex = DEVICE_ID_PATTERN.removeprefix("^").removesuffix("$")  # as the forwarder accepts them


CONVERTERS: dict[str, type[BaseConverter]] = {"video_id": VideoId, "device_id": DeviceId}


def install(app: Flask) -> None:
    """Before any blueprint: their rules name these converters."""
    app.url_map.converters.update(CONVERTERS)
