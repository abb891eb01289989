"""Auth on the live socket of the real web app (gunicorn + gevent): the handshake needs a key, refuses other
sites' pages, and opening connections is rate limited; keys made by the real `keys create` command."""

from __future__ import annotations

import pytest
import redis
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from tests.conftest import stop
from tests.web.conftest import create_key, start_web

pytestmark = pytest.mark.slow  # a gunicorn web process and the keys command
RATE_LIMIT_REDIS = "redis://127.0.0.1:6379/13"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    folder = tmp_path_factory.mktemp("auth")
    env = {
        "EMOTION_DATABASE_URL": f"sqlite:///{folder / 'emotion-detector.db'}",
        "EMOTION_AUTH": "required",
        "EMOTION_RATE_LIMIT_LIVE": "3/minute",
        # The production path: every gunicorn worker counts in the same Redis (a database of the tests' own,
        # emptied first, so an earlier run's counts within the minute do not carry over).
        "EMOTION_RATE_LIMIT_STORAGE_URL": RATE_LIMIT_REDIS,
    }
    redis.Redis.from_url(RATE_LIMIT_REDIS).flushdb()
    key = create_key("camera page", env)
    web = start_web(folder, "inprocess", **env)
    yield web, key
    stop(web.process)


def handshake_status(url: str, **headers: str) -> int:
    try:
        with connect(url, additional_headers=headers, open_timeout=20) as ws:
            assert ws.recv(timeout=20)  # the hello
            return 101
    except InvalidStatus as refused:
        return refused.response.status_code


def test_the_live_socket_needs_a_key_refuses_other_sites_and_is_rate_limited(secured):
    web, key = secured
    assert handshake_status(web.ws_url) == 401
    assert handshake_status(web.ws_url, Authorization="Bearer edk_wrong") == 403
    assert handshake_status(web.ws_url, Authorization=f"Bearer {key}", Origin="https://evil.example") == 403
    assert [handshake_status(web.ws_url, Authorization=f"Bearer {key}", Origin=web.url) for _ in range(3)] == [101] * 3
    assert handshake_status(web.ws_url, Authorization=f"Bearer {key}") == 429
