"""A Mosquitto of a test's own (the shared one on 1883 cannot be restarted by a test)."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

from tests.conftest import stop, wait_until


@contextlib.contextmanager
def mosquitto(folder: Path, port: int, *settings: str) -> Iterator[subprocess.Popen]:
    """``mosquitto`` listening on 127.0.0.1:port with these configuration lines; its log in ``folder``."""
    config = folder / f"mosquitto-{port}.conf"
    # Started as root, mosquitto would become the user "mosquitto", who cannot write its persistence file into
    # the test's (root's) folder.
    user = ["user root"] if os.geteuid() == 0 else []
    config.write_text("\n".join([f"listener {port} 127.0.0.1", "allow_anonymous true", *user, *settings, ""]))
    log_path = folder / f"mosquitto-{port}.log"
    starts = log_path.read_text().count(" running") if log_path.exists() else 0  # a restart appends
    with open(log_path, "a") as log:
        broker = subprocess.Popen(["mosquitto", "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: log_path.read_text().count(" running") > starts, 10, "mosquitto", broker)
        yield broker
    finally:
        stop(broker)  # SIGTERM: with persistence on, it saves its sessions and queued messages first
