"""``emotion-detector forward``'s options and start (the forwarder itself, and its imports, load only when it runs)."""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
from types import FrameType

from emotion_detector.edge.options import add_broker_arguments

DEFAULT_GROUP = "forwarders"

log = logging.getLogger("emotion_detector.edge.forwarder")


def default_client_id(group: str = DEFAULT_GROUP) -> str:
    """Stable across restarts of one forwarder, so that its persistent session (queued events) is found again."""
    return f"forwarder-{group}-{socket.gethostname()}"[:64]


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    forward = commands.add_parser("forward", help="store edge devices' events from an MQTT broker in the database (edge mode)")
    add_broker_arguments(forward)
    forward.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        help=f"shared-subscription group: forwarders in one group split the events (default: {DEFAULT_GROUP})",
    )
    forward.add_argument("--client-id", help="MQTT client id, stable across restarts (default: forwarder-GROUP-HOSTNAME)")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # a line per plugin at every start
    from emotion_detector.edge.forwarder import EventStore, Forwarder, ForwarderOptions
    from emotion_detector.edge.mqtt import Broker, BrokerUrlError
    from emotion_detector.settings import Settings
    from emotion_detector.videos.db import SchemaUpgrade

    settings = Settings()
    url = args.mqtt or settings.mqtt_url
    if not url:
        print("no MQTT broker: pass --mqtt mqtt://host:1883 or set EMOTION_MQTT_URL", file=sys.stderr)
        return 2
    try:
        broker = Broker.from_url(url, args.username, args.password_file, args.ca_file, args.cert_file, args.key_file)
    except BrokerUrlError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("%s: stopping after the current batch", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    if not SchemaUpgrade(settings.database_url).run(stop):
        return 0
    options = ForwarderOptions(group=args.group, client_id=args.client_id)
    Forwarder(broker, EventStore(settings.database_url), options).run(stop)
    log.info("stopped")
    return 0
