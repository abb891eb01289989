"""Workers consume the segments' queue before the parts' queue: a waiting segment is always taken before a
waiting part (the analysis is what everything else waits for), on the embedded SQL queue and on Redis."""

from __future__ import annotations

import pytest
import redis
from kombu import Connection

from emotion_detector.settings import Settings
from emotion_detector.videos import jobs
from tests.videos.conftest import REDIS_TEST_DB, REDIS_URL


@pytest.fixture(params=["embedded", "redis"])
def broker_url(request, tmp_path):
    if request.param == "embedded":
        yield f"sqla+sqlite:///{tmp_path / 'queue.db'}"
        return
    url = f"{REDIS_URL}/{REDIS_TEST_DB}"
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


def test_a_waiting_segment_is_taken_before_parts_queued_earlier(broker_url, tmp_path):
    jobs.configure(Settings(broker_url=broker_url, database_url=f"sqlite:///{tmp_path / 'jobs.db'}"))
    try:
        conf = jobs.celery_app.conf
        with Connection(broker_url, transport_options=conf.broker_transport_options) as connection:
            queues = {queue.name: connection.SimpleQueue(queue.name) for queue in conf.task_queues}
            for message in ["part 0", "part 1", "segment 5", "segment 6", "part 2"]:
                queues[jobs.RENDER_QUEUE if message.startswith("part") else jobs.SEGMENT_QUEUE].put({"task": message}, serializer="json")
            taken: list[str] = []

            def take(body, message) -> None:
                taken.append(body["task"])
                message.ack()

            with connection.Consumer([q.queue for q in queues.values()], callbacks=[take], accept=["json"], prefetch_count=1):
                while len(taken) < 5:
                    connection.drain_events(timeout=5)
            for queue in queues.values():
                queue.close()
        assert taken == ["segment 5", "segment 6", "part 0", "part 1", "part 2"]
    finally:
        jobs.configure(Settings())
