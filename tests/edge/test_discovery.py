"""Home Assistant MQTT discovery against the real broker (Mosquitto on 127.0.0.1:1883): a publisher leaves
retained configs that Home Assistant can use - each sensor's value_template, applied (with Jinja, as Home
Assistant does) to the retained view the device published, gives the expected state, and its availability
follows the retained status - and retiring the device clears them all. Each test has its own device id and
discovery prefix, so tests never see each other's retained messages."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import jinja2
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from emotion_detector.__main__ import main
from emotion_detector.edge.discovery import NO_FACES, config_topics, discovery_messages, node_id, sensors
from emotion_detector.edge.messages import DeviceState, status_topic, view_topic
from emotion_detector.edge.mqtt import Broker
from emotion_detector.edge.outbox import Outbox
from emotion_detector.edge.publisher import Publisher, retire
from emotion_detector.edge.view import view_of
from emotion_detector.labels import EMOTIONS
from tests.edge.test_view import START_MS, face

BROKER = Broker.from_url("mqtt://127.0.0.1:1883")
REQUIRED = {"name", "unique_id", "state_topic", "value_template", "device", "availability"}


def retained(*topic_filters: str, settle_s: float = 0.5) -> dict[str, bytes]:
    """What a subscriber that comes now gets: the retained messages (topic → payload). The broker sends them
    right after the subscription's acknowledgement; ``settle_s`` after it, nothing more comes."""
    messages: dict[str, bytes] = {}
    subscribed = threading.Event()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"test-retained-{uuid.uuid4().hex[:8]}", protocol=mqtt.MQTTv5)
    client.on_message = lambda _c, _u, message: messages.__setitem__(message.topic, message.payload) if message.retain else None
    client.on_subscribe = lambda *_: subscribed.set()
    client.connect(BROKER.host, BROKER.port)
    client.loop_start()
    try:
        client.subscribe([(topic_filter, 1) for topic_filter in topic_filters])
        assert subscribed.wait(10), "the broker did not confirm the subscription"
        time.sleep(settle_s)
    finally:
        client.disconnect()
        client.loop_stop()
    return dict(messages)


def render(template: str, payload: bytes) -> str:
    """A value_template as Home Assistant renders it: ``value`` the payload's text, ``value_json`` its JSON."""
    return jinja2.Environment(autoescape=False).from_string(template).render(value=payload.decode(), value_json=json.loads(payload))  # nosec B701  # not HTML


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, f"{what} not seen after {timeout_s} s"
        time.sleep(0.05)


@pytest.fixture
def device_id() -> str:
    return f"test.ha-{uuid.uuid4().hex[:10]}"  # with a '.', which Home Assistant's topic levels do not allow


@pytest.fixture
def prefix() -> Iterator[str]:
    """A discovery prefix of the test's own; whatever is left retained under it is cleared afterwards."""
    name = f"test-{uuid.uuid4().hex[:10]}/homeassistant"
    yield name
    left = retained(f"{name}/#", settle_s=0.2)
    if left:
        cleaner = BROKER.client(f"test-cleaner-{uuid.uuid4().hex[:8]}")
        cleaner.connect(BROKER.host, BROKER.port)
        cleaner.loop_start()
        for topic in left:
            cleaner.publish(topic, b"", qos=1, retain=True).wait_for_publish(timeout=5)
        cleaner.disconnect()
        cleaner.loop_stop()


def test_the_config_topics_are_home_assistants_per_sensor_form_with_a_device_id_spelled_for_a_topic_level(device_id: str):
    topics = config_topics("homeassistant", device_id)
    assert len(topics) == len(set(topics)) == 2 + len(EMOTIONS)
    node = node_id(device_id)
    assert "." not in node and node != node_id(device_id.replace(".", "_"))  # cam.1 and cam_1 stay apart
    assert all(t.startswith(f"homeassistant/sensor/{node}/") and t.endswith("/config") for t in topics)
    assert node_id("door-1") == "emotion-detector_door-1"


def test_a_device_announces_its_sensors_to_home_assistant_and_retiring_it_removes_them(tmp_path: Path, device_id: str, prefix: str):
    publisher = Publisher(BROKER, device_id, Outbox(tmp_path / "q.sqlite3", 100), discovery=discovery_messages(prefix, device_id, "9.9"))
    publisher.start()
    try:
        wait_for(lambda: publisher.connected, 10, "the connection")
        view = view_of(device_id, START_MS, [face("happy"), face("sad", 0.6, 2), face("happy", 0.7, 3)])
        publisher.publish_view(view)
        wait_for(lambda: view_topic(device_id) in retained(view_topic(device_id), settle_s=0.1), 10, "the retained view")
        configs = retained(f"{prefix}/#")
        device = retained(f"emotion-detector/{device_id}/#")
    finally:
        publisher.stop()

    assert sorted(configs) == sorted(config_topics(prefix, device_id))
    expected = {"faces_in_view": "3", "dominant_emotion": "happy"} | {f"share_{label}": "0.0" for label in EMOTIONS}
    expected |= {"share_happy": "66.7", "share_sad": "33.3"}
    seen = {}
    for spec in sensors():
        config = json.loads(configs[f"{prefix}/sensor/{node_id(device_id)}/{spec.key}/config"])
        assert config.keys() >= REQUIRED, spec.key
        assert config["state_topic"] == view_topic(device_id) and config["unique_id"].endswith(spec.key)
        assert config["default_entity_id"] == f"sensor.{config['object_id']}"
        assert config["device"] == {
            "identifiers": [f"emotion-detector_{device_id}"],
            "name": f"Emotion Detector {device_id}",
            "manufacturer": "Emotion Detector",
            "model": "emotion-detector edge",
            "sw_version": "9.9",
        }
        (availability,) = config["availability"]
        assert availability["topic"] == status_topic(device_id)
        assert render(availability["value_template"], device[status_topic(device_id)]) == availability["payload_available"]
        seen[spec.key] = render(config["value_template"], device[view_topic(device_id)])
        if config.get("unit_of_measurement") == "%":
            assert config["state_class"] == "measurement"
        if config.get("device_class") == "enum":
            assert seen[spec.key] in config["options"]
    assert seen == expected
    assert len({json.loads(p)["unique_id"] for p in configs.values()}) == len(configs)

    # Stopped: the retained status makes every sensor unavailable; nobody in view renders as "none".
    status = retained(status_topic(device_id))[status_topic(device_id)]
    assert render("{{ value_json.state }}", status) == DeviceState.OFFLINE.value
    dominant = next(spec for spec in sensors() if spec.key == "dominant_emotion")
    assert render(dominant.value_template, view_of(device_id, START_MS, []).payload()) == NO_FACES

    retire(BROKER, device_id, prefix)
    assert retained(f"{prefix}/#", f"emotion-detector/{device_id}/#") == {}


def test_the_edge_command_retires_a_device_under_the_configured_prefix(device_id: str, prefix: str, monkeypatch: pytest.MonkeyPatch):
    publisher_client = BROKER.client(f"test-announcer-{uuid.uuid4().hex[:8]}")
    publisher_client.connect(BROKER.host, BROKER.port)
    publisher_client.loop_start()
    for topic, payload in [*discovery_messages(prefix, device_id, "9.9"), (view_topic(device_id), b"{}"), (status_topic(device_id), b"{}")]:
        publisher_client.publish(topic, payload, qos=1, retain=True).wait_for_publish(timeout=5)
    publisher_client.disconnect()
    publisher_client.loop_stop()
    assert len(retained(f"{prefix}/#", f"emotion-detector/{device_id}/#")) == 2 + len(sensors())

    monkeypatch.setenv("EMOTION_HA_DISCOVERY_PREFIX", prefix)
    assert main(["edge", "--retire", "--device-id", device_id, "--mqtt", "mqtt://127.0.0.1:1883"]) == 0
    assert retained(f"{prefix}/#", f"emotion-detector/{device_id}/#") == {}


def test_running_without_a_source_is_refused_unless_retiring(capsys: pytest.CaptureFixture[str]):
    assert main(["edge", "--device-id", "door-1", "--mqtt", "mqtt://127.0.0.1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("emotion-detector edge: ") and "--source (or --retire)" in err
