"""One way to reach an MQTT broker, for the edge command and the forwarder: a URL
(``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` for TLS) plus the options a remote broker needs
(a CA file, a client certificate, a password from a file rather than the command line), and a paho-mqtt client
(MQTT v5) set up from it."""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

DEFAULT_PORT = {"mqtt": 1883, "mqtts": 8883}
KEEPALIVE_S = 30  # the broker publishes the last will about 1.5 keepalives after a device vanishes
RECONNECT_DELAY_S = (1, 30)  # paho backs off from the first to the second while the broker is away


class BrokerUrlError(ValueError):
    """A broker URL or option that cannot work (the message says why)."""


@dataclass(frozen=True)
class Broker:
    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in logs
    ca_file: Path | None = None  # TLS: trust this CA instead of the system's
    cert_file: Path | None = None  # TLS: a client certificate (with key_file)
    key_file: Path | None = None

    @classmethod
    def from_url(
        cls,
        url: str,
        username: str | None = None,
        password_file: Path | None = None,
        ca_file: Path | None = None,
        cert_file: Path | None = None,
        key_file: Path | None = None,
    ) -> Broker:
        """``mqtt://host:1883``; a username or password file given as options wins over the URL's."""
        parts = urlsplit(url)
        if parts.scheme not in DEFAULT_PORT:
            raise BrokerUrlError(f"{url!r}: the broker URL must start with mqtt:// or mqtts:// (TLS)")
        if not parts.hostname:
            raise BrokerUrlError(f"{url!r}: no broker host")
        try:
            port = parts.port or DEFAULT_PORT[parts.scheme]
        except ValueError as error:
            raise BrokerUrlError(f"{url!r}: {error}") from None
        password = unquote(parts.password) if parts.password else None
        if password_file is not None:
            try:
                password = password_file.read_text().strip()
            except OSError as error:
                raise BrokerUrlError(f"cannot read the MQTT password file: {error}") from None
        tls = parts.scheme == "mqtts" or ca_file is not None or cert_file is not None
        if (cert_file is None) != (key_file is None):
            raise BrokerUrlError("a client certificate needs both --cert-file and --key-file")
        return cls(
            parts.hostname,
            port,
            tls,
            username or (unquote(parts.username) if parts.username else None),
            password,
            ca_file,
            cert_file,
            key_file,
        )

    def describe(self) -> str:
        """For messages and logs: never the password."""
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"

    def client(self, client_id: str) -> mqtt.Client:
        """A paho client (MQTT v5) with this broker's credentials and TLS set; not connected yet."""
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
        if self.username is not None:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(
                ca_certs=str(self.ca_file) if self.ca_file else None,
                certfile=str(self.cert_file) if self.cert_file else None,
                keyfile=str(self.key_file) if self.key_file else None,
                cert_reqs=ssl.CERT_REQUIRED,  # a remote broker's certificate is always verified
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.reconnect_delay_set(*RECONNECT_DELAY_S)
        return client
