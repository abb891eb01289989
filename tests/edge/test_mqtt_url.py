"""Broker URLs and options of the edge command and the forwarder."""

from pathlib import Path

import pytest

from emotion_detector.edge.mqtt import Broker, BrokerUrlError


def test_a_plain_url_gets_the_default_port_and_no_tls():
    broker = Broker.from_url("mqtt://broker.local")
    assert (broker.host, broker.port, broker.tls, broker.username, broker.password) == ("broker.local", 1883, False, None, None)


def test_mqtts_means_tls_on_8883_and_credentials_come_from_the_url_unquoted():
    broker = Broker.from_url("mqtts://edge%2F1:p%40ss@broker.example:8884")
    assert (broker.port, broker.tls, broker.username, broker.password) == (8884, True, "edge/1", "p@ss")
    assert "p@ss" not in repr(broker) and "p@ss" not in broker.describe()


def test_a_password_file_and_a_ca_file_win_and_turn_tls_on(tmp_path: Path):
    secret = tmp_path / "password"
    secret.write_text("from-file\n")
    broker = Broker.from_url("mqtt://user:inline@host", password_file=secret, ca_file=tmp_path / "ca.pem")
    assert (broker.password, broker.tls, broker.username) == ("from-file", True, "user")


@pytest.mark.parametrize(
    ("url", "message"),
    [("http://host", "mqtt:// or mqtts://"), ("mqtt://", "no broker host"), ("mqtt://host:99999", "out of range")],
)
def test_unusable_urls_say_why(url: str, message: str):
    with pytest.raises(BrokerUrlError, match=message):
        Broker.from_url(url)


def test_a_certificate_without_its_key_is_refused(tmp_path: Path):
    with pytest.raises(BrokerUrlError, match="both"):
        Broker.from_url("mqtts://host", cert_file=tmp_path / "cert.pem")


def test_a_missing_password_file_is_a_clear_error(tmp_path: Path):
    with pytest.raises(BrokerUrlError, match="password file"):
        Broker.from_url("mqtt://host", password_file=tmp_path / "absent")
