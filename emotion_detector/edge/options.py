"""Command-line options that the edge command and the forwarder share: how to reach and log in to the broker
(argparse only: every CLI start reads this, so nothing heavy is imported here)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--mqtt",
        metavar="URL",
        help="the broker, mqtt://[user[:password]@]host[:port] or mqtts://... (default: EMOTION_MQTT_URL)",
    )
    parser.add_argument("--username", help="the broker's user name (wins over the URL's)")
    parser.add_argument("--password-file", type=Path, help="a file holding the broker password (kept off the command line)")
    parser.add_argument("--ca-file", type=Path, help="TLS: trust this CA for the broker's certificate")
    parser.add_argument("--cert-file", type=Path, help="TLS: a client certificate (with --key-file)")
    parser.add_argument("--key-file", type=Path, help="TLS: the client certificate's key")
