"""The fault suite's tools: outages made with the real servers of this machine, never by stopping the shared
ones. PostgreSQL is reached through a TCP proxy the test cuts and restores (the database then refuses
connections, as one that went down does); Redis and Mosquitto are instances of the test's own, stopped and
started again on the same port; a full disk is a small tmpfs."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from websockets.sync.client import connect

from tests.conftest import free_port, stop, wait_until


class TcpProxy:
    """127.0.0.1:port → target. ``cut()`` closes the listener and every connection through it: new ones are
    refused and open ones end, as when the server behind goes down; ``restore()`` listens again."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1"):
        self.target = (target_host, target_port)
        self.port = free_port()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._listener: socket.socket | None = None

    def restore(self) -> None:
        listener = socket.create_server(("127.0.0.1", self.port), reuse_port=False)
        listener.settimeout(0.2)  # accept() wakes up to see a cut
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            self._sockets.clear()

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            for sock in (client, upstream):
                sock.settimeout(None)
            with self._lock:
                self._sockets |= {client, upstream}
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@contextlib.contextmanager
def redis_server(folder: Path, port: int) -> Iterator[subprocess.Popen]:
    """A redis-server of the test's own on ``port``, persisting to ``folder`` (append-only file, fsync every
    write: what a production broker that must not lose queued tasks runs with), so a restart keeps its data."""
    log_path = folder / f"redis-{port}.log"
    args = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", ""]
    args += ["--appendonly", "yes", "--appendfsync", "always", "--logfile", str(log_path)]
    server = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: redis.Redis(port=port, socket_timeout=1).ping(), 10, "redis-server", server)
        yield server
    finally:
        stop(server)


@contextlib.contextmanager
def small_filesystem(path: Path, size_mib: int) -> Iterator[Path]:
    """A tmpfs of ``size_mib`` MiB mounted at ``path``: a disk that fills up. Mounting needs root (CI runs as
    root or with sudo); without it the test fails saying so rather than pretending with something else."""
    path.mkdir(parents=True, exist_ok=True)
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    if sudo and shutil.which("sudo") is None:
        pytest.fail("mounting a tmpfs needs root or passwordless sudo")
    mount = [*sudo, "mount", "-t", "tmpfs", "-o", f"size={size_mib}m,mode=1777", "tmpfs", str(path)]
    mounted = subprocess.run(mount, capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.fail(f"could not mount a tmpfs at {path} (needs root or passwordless sudo): {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run([*sudo, "umount", "--lazy", str(path)], check=True)


class LiveStream:
    """A live client sending one frame at a time and timing each answer."""

    def __init__(self, ws_url: str, headers: dict[str, str] | None = None):
        self._context = contextlib.ExitStack()
        self.ws = self._context.enter_context(connect(ws_url, max_size=None, open_timeout=30, additional_headers=headers))
        self.hello = json.loads(self.ws.recv(timeout=30))
        self.round_trips_ms: list[float] = []

    def send(self, frame: bytes) -> dict:
        started = time.monotonic()
        self.ws.send(frame)
        answer = json.loads(self.ws.recv(timeout=60))
        self.round_trips_ms.append((time.monotonic() - started) * 1000)
        return answer

    def close(self) -> None:
        self._context.close()
