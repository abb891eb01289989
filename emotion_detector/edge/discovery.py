"""Home Assistant MQTT discovery for an edge device: the retained config messages that make Home Assistant (its
``mqtt`` integration, on the same broker) show the device and its sensors without any YAML, and the empty
retained messages that remove them again when the device is retired. Pure: topics and payloads, no I/O.

One device in Home Assistant per edge device, with these sensors, all read from the device's retained ``view``
topic and available while its retained ``status`` (also its last will) says ``online``:

- faces in view (a count),
- the dominant expression (an enum: the expression labels, or ``none`` when nobody is in view),
- one per expression label: its share of the faces in view, in %.

Config topics: ``<prefix>/sensor/<node id>/<sensor key>/config`` (Home Assistant's per-entity discovery, which
older releases understand too, unlike the newer one-message-per-device form)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from emotion_detector.edge.messages import TOPIC_PREFIX, DeviceState, status_topic, view_topic
from emotion_detector.labels import EMOTIONS

DEFAULT_PREFIX = "homeassistant"  # Home Assistant's default discovery prefix
MANUFACTURER = "Emotion Detector"
MODEL = "emotion-detector edge"
NO_FACES = "none"  # the dominant expression's state while nobody is in view
DISCOVERY_QOS = 1


@dataclass(frozen=True)
class SensorSpec:
    key: str  # the last level of its unique id, entity id and config topic
    name: str  # shown after the device's name ("Emotion Detector door-1 Faces in view")
    value_template: str  # Jinja, applied by Home Assistant to the view payload as value_json
    extra: tuple[tuple[str, Any], ...] = ()  # unit, state class, device class, icon...


def sensors() -> list[SensorSpec]:
    """Every sensor of a device, in the order Home Assistant lists them."""
    specs = [
        SensorSpec(
            "faces_in_view",
            "Faces in view",
            "{{ value_json.faces_in_view }}",
            (("state_class", "measurement"), ("unit_of_measurement", "faces"), ("icon", "mdi:account-group")),
        ),
        SensorSpec(
            "dominant_emotion",
            "Dominant expression",
            f"{{{{ value_json.dominant_emotion or '{NO_FACES}' }}}}",
            (("device_class", "enum"), ("options", [*EMOTIONS, NO_FACES]), ("icon", "mdi:emoticon-outline")),
        ),
    ]
    for label in EMOTIONS:
        specs.append(
            SensorSpec(
                f"share_{label}",
                f"{label.capitalize()} share",
                # Shares travel as 0..1 (like every probability on the wire); Home Assistant shows percent.
                f"{{{{ (value_json.emotion_shares.{label} * 100) | round(1) }}}}",
                (("state_class", "measurement"), ("unit_of_measurement", "%"), ("suggested_display_precision", 0)),
            )
        )
    return specs


def node_id(device_id: str) -> str:
    """The device's level in config topics: Home Assistant allows only ``[A-Za-z0-9_-]`` there, so a device id
    with a '.' is spelled with '_' plus a short hash of the real id (``cam.1`` and ``cam_1`` stay apart)."""
    if re.fullmatch(r"[A-Za-z0-9_-]+", device_id):
        return f"{TOPIC_PREFIX}_{device_id}"
    digest = hashlib.sha256(device_id.encode()).hexdigest()[:8]
    return f"{TOPIC_PREFIX}_{re.sub(r'[^A-Za-z0-9_-]', '_', device_id)}_{digest}"


def config_topic(prefix: str, device_id: str, key: str) -> str:
    return f"{prefix}/sensor/{node_id(device_id)}/{key}/config"


def config_topics(prefix: str, device_id: str) -> list[str]:
    return [config_topic(prefix, device_id, spec.key) for spec in sensors()]


def _slug(text: str) -> str:
    """An entity id's object part as Home Assistant would make it: lower case, runs of other characters → '_'."""
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def config(device_id: str, spec: SensorSpec, sw_version: str) -> dict[str, Any]:
    """One sensor's discovery config (a JSON object)."""
    object_id = _slug(f"{TOPIC_PREFIX} {device_id} {spec.key}")
    return {
        "name": spec.name,
        "unique_id": f"{TOPIC_PREFIX}_{device_id}_{spec.key}",
        # default_entity_id since Home Assistant 2025.10; object_id, its older spelling (deprecated there), for
        # releases before that.
        "default_entity_id": f"sensor.{object_id}",
        "object_id": object_id,
        "state_topic": view_topic(device_id),
        "value_template": spec.value_template,
        "availability": [
            {
                "topic": status_topic(device_id),
                "value_template": "{{ value_json.state }}",
                "payload_available": DeviceState.ONLINE.value,
                "payload_not_available": DeviceState.OFFLINE.value,
            }
        ],
        "qos": 1,
        "device": {
            "identifiers": [f"{TOPIC_PREFIX}_{device_id}"],
            "name": f"{MANUFACTURER} {device_id}",
            "manufacturer": MANUFACTURER,
            "model": MODEL,
            "sw_version": sw_version,
        },
        "origin": {"name": TOPIC_PREFIX, "sw_version": sw_version},
        **dict(spec.extra),
    }


def discovery_messages(prefix: str, device_id: str, sw_version: str) -> list[tuple[str, bytes]]:
    """``(topic, payload)`` for every sensor: publish them retained, so Home Assistant finds them whenever it starts."""
    return [
        (config_topic(prefix, device_id, spec.key), json.dumps(config(device_id, spec, sw_version), separators=(",", ":")).encode())
        for spec in sensors()
    ]


def removal_messages(prefix: str, device_id: str) -> list[tuple[str, bytes]]:
    """Empty retained payloads for every config topic: the broker forgets them and Home Assistant removes the
    sensors (and the device, once it has none left)."""
    return [(topic, b"") for topic in config_topics(prefix, device_id)]
