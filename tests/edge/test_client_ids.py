"""Forwarders' default MQTT client ids: distinct for every forwarder running on one host (two with one id evict
each other from the broker, issue 27), and the same again after a restart (the broker keeps the events queued
for it under that id). Against the real broker on 127.0.0.1:1883, forwarders on threads of this process."""

from __future__ import annotations

import socket
import threading
import time
import uuid

from emotion_detector.edge.forwarder import EventStore, Forwarder, ForwarderOptions
from emotion_detector.edge.mqtt import Broker
from emotion_detector.videos.db import migrate
from tests.edge.test_forwarder import end_sessions

BROKER = Broker.from_url("mqtt://127.0.0.1:1883")


def test_two_forwarders_on_one_host_get_distinct_ids_and_a_restarted_one_gets_its_id_back(tmp_path):
    group, host = f"ids-{uuid.uuid4().hex[:8]}", socket.gethostname()
    store = EventStore(f"sqlite:///{tmp_path / 'edge.db'}")
    first, second = Forwarder(BROKER, store, ForwarderOptions(group=group)), Forwarder(BROKER, store, ForwarderOptions(group=group))
    other_group = Forwarder(BROKER, store, ForwarderOptions(group=f"{group}-b"))
    try:
        assert (first.client_id, second.client_id) == (f"forwarder-{group}-{host}-0", f"forwarder-{group}-{host}-1")
        assert other_group.client_id == f"forwarder-{group}-b-{host}-0"
        first.close()  # it stopped: the next one to start takes its id, and its session
        restarted = Forwarder(BROKER, store, ForwarderOptions(group=group))
        assert restarted.client_id == f"forwarder-{group}-{host}-0"
        restarted.close()
    finally:
        for forwarder in (first, second, other_group):
            forwarder.close()
    explicit = Forwarder(BROKER, store, ForwarderOptions(group=group, client_id="door-forwarder"))
    assert explicit.client_id == "door-forwarder"


def test_two_forwarders_on_one_host_stay_connected_side_by_side(tmp_path):
    """With one client id the broker would drop the first forwarder's connection when the second connects, and
    the first, reconnecting, would drop the second: each would be connected only part of the time."""
    url = f"sqlite:///{tmp_path / 'edge.db'}"
    migrate(url)
    group = f"side-{uuid.uuid4().hex[:8]}"
    forwarders = [Forwarder(BROKER, EventStore(url), ForwarderOptions(group=group, session_expiry_s=60)) for _ in range(2)]
    stop = threading.Event()
    threads = [threading.Thread(target=f.run, args=(stop,), daemon=True) for f in forwarders]
    ids = [f.client_id for f in forwarders]
    try:
        for thread in threads:
            thread.start()
        assert all(f.subscribed.wait(10) for f in forwarders)
        time.sleep(3)  # paho reconnects after a drop within a second or two
        assert all(f.subscribed.is_set() for f in forwarders)
        # One connection each, never dropped: every connect and disconnect counts one.
        assert [f._connection for f in forwarders] == [1, 1]
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
        end_sessions(*ids)
