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


MAX_FORWARDERS_PER_HOST = 256  # per group: far more than one host's cores could keep busy
MAX_CLIENT_ID_CHARS = 64


class ClientId:
    """The default MQTT client id, ``forwarder-GROUP-HOST-N``: N is the lowest number that no other running
    forwarder of the group on this host holds. Two forwarders on one host then never share an id (the broker
    would drop one session whenever the other connects, and they would evict each other forever), and a
    forwarder that restarts gets its number, and so its persistent session with the events queued for it,
    back. The number is held by an abstract Unix socket (Linux): host-wide, whoever runs the process, and
    released by the kernel when the process ends, however it ends."""

    def __init__(self, group: str = DEFAULT_GROUP):
        for number in range(MAX_FORWARDERS_PER_HOST):
            holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                holder.bind(f"\0emotion-detector-forwarder/{group[:64]}/{number}")
            except OSError:  # held by a running forwarder
                holder.close()
                continue
            self._holder: socket.socket | None = holder
            suffix = f"-{socket.gethostname()}-{number}"
            self.value = f"forwarder-{group}"[: MAX_CLIENT_ID_CHARS - len(suffix)] + suffix
            return
        raise RuntimeError(f"{MAX_FORWARDERS_PER_HOST} forwarders of group {group!r} already run on this host")

    def release(self) -> None:
        if self._holder is not None:
            self._holder.close()
            self._holder = None


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    forward = commands.add_parser("forward", help="store edge devices' events from an MQTT broker in the database (edge mode)")
    add_broker_arguments(forward)
    forward.add_argument(
        "--group",
        default=DEFAULT_GROUP,
        help=f"shared-subscription group: forwarders in one group split the events (default: {DEFAULT_GROUP})",
    )
    forward.add_argument(
        "--client-id",
        help="MQTT client id, stable across restarts (default: forwarder-GROUP-HOSTNAME-N, N the lowest free on this host)",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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
