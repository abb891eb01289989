"""GET /metrics on the app factory (Flask's test client, in-process): counters move after real requests,
labels are routes and never paths or ids, and who may read the page."""

from __future__ import annotations

import io
import json
import re
import uuid

import pytest
from flask_sock import ConnectionClosed

from app import create_app
from emotion_detector.web import live
from tests.conftest import ROOT
from tests.prometheus import label_values, value
from tests.web.conftest import video_frames_as_jpeg

TOKEN = "metrics-token-" + "x" * 24
REQUESTS = "emotion_detector_http_requests_total"
STAGES = "emotion_detector_stage_duration_seconds_count"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("metrics")
    return create_app(
        {
            "model_server": "inprocess",
            "environment": "test",
            "instance_dir": tmp,
            "database_url": f"sqlite:///{tmp / 'videos.db'}",
            "broker_url": f"sqla+sqlite:///{tmp / 'queue.db'}",
            "storage_dir": tmp / "storage",
        }
    )


def scrape(app) -> str:
    answer = app.test_client().get("/metrics")
    assert answer.status_code == 200, answer.get_data(as_text=True)
    assert answer.content_type.startswith("text/plain")
    return answer.get_data(as_text=True)


def test_an_analysed_image_counts_its_request_and_its_stages(app, shared_dir):
    image = (shared_dir / "media" / "images" / "obama.jpg").read_bytes()
    before = scrape(app)
    answer = app.test_client().post("/api/v1/analyze", data=image, content_type="image/jpeg")
    assert answer.status_code == 200 and answer.get_json()["faces"]
    after = scrape(app)
    labels = {"route": "/api/v1/analyze", "method": "POST", "status": "200"}
    assert value(after, REQUESTS, **labels) - value(before, REQUESTS, **labels) == 1
    for stage in answer.get_json()["timing_ms"]:  # the pipeline's own timings, each one observed
        assert value(after, STAGES, mode="image", stage=stage) - value(before, STAGES, mode="image", stage=stage) == 1, stage
    assert value(after, "emotion_detector_http_request_duration_seconds_count", route="/api/v1/analyze", method="POST") >= 1


def test_labels_are_routes_never_paths_or_ids(app):
    video_id = uuid.uuid4().hex
    client = app.test_client()
    assert client.get(f"/api/v1/videos/{video_id}").status_code == 404
    assert client.get("/no-such-page-f00d").status_code == 404
    assert client.open("/", method="BREW").status_code == 405
    text = scrape(app)
    assert value(text, REQUESTS, route="/api/v1/videos/<video_id:video_id>", method="GET", status="404") >= 1
    assert value(text, REQUESTS, route="unmatched", method="GET", status="404") >= 1
    assert value(text, REQUESTS, route="unmatched", method="other", status="405") >= 1  # routing refused it: no rule
    assert video_id not in text and "no-such-page" not in text and "BREW" not in text
    assert label_values(text, "method") <= {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other"}


def test_video_jobs_are_counted_by_state_from_the_database(app, shared_dir):
    before = scrape(app)
    assert {"queued", "running", "done", "failed", "cancelled"} <= label_values(before, "state")
    video = (shared_dir / "media" / "videos" / "no_face.mp4").read_bytes()
    answer = app.test_client().post(
        "/api/v1/videos", data={"video": (io.BytesIO(video), "secret-name.mp4", "video/mp4")}, content_type="multipart/form-data"
    )
    assert answer.status_code == 202, answer.get_json()
    after = scrape(app)
    jobs = "emotion_detector_video_jobs"
    assert value(after, jobs, state="queued") - value(before, jobs, state="queued") == 1  # no worker runs here
    assert answer.get_json()["id"] not in after and "secret-name" not in after


class FakeSocket:
    """flask-sock's socket as live_socket uses it: each batch is what has arrived by the time it reads
    again (a wait for the first, then none); after the last batch, the client goes away."""

    def __init__(self, app, batches: list[list[bytes]]) -> None:
        self.app, self.batches, self.waiting, self.sent, self.open_while_answering = app, list(batches), [], [], []

    def receive(self, timeout: float | None = None) -> bytes | None:
        if timeout == 0:
            return self.waiting.pop(0) if self.waiting else None
        if not self.batches:
            raise ConnectionClosed()
        self.waiting = list(self.batches.pop(0))
        return self.waiting.pop(0)

    def send(self, text: str) -> None:
        self.sent.append(text)
        self.open_while_answering.append(value(scrape(self.app), "emotion_detector_live_sockets_open"))


def test_a_live_stream_counts_its_socket_answered_and_dropped_frames(app, shared_dir):
    frames = video_frames_as_jpeg(shared_dir / "media" / "videos" / "single_face.mp4")[:2]
    before = scrape(app)
    # Two frames waiting at once: the older is dropped, the newer answered; then a bad frame, answered with an error.
    socket = FakeSocket(app, [[frames[0], frames[1]], [b"not an image"]])
    with app.test_request_context("/ws/live"):
        live.live_socket(socket)
    after = scrape(app)
    answered = "emotion_detector_live_frames_answered_total"
    assert [json.loads(message)["type"] for message in socket.sent] == ["hello", "result", "error"]
    assert value(after, answered, outcome="result") - value(before, answered, outcome="result") == 1
    assert value(after, answered, outcome="error") - value(before, answered, outcome="error") == 1
    dropped = "emotion_detector_live_frames_dropped_total"
    assert value(after, dropped) - value(before, dropped) == 1
    assert value(after, STAGES, mode="live", stage="detect") - value(before, STAGES, mode="live", stage="detect") == 1
    assert socket.open_while_answering == [1, 1, 1]  # counted as open while it answers
    assert value(after, "emotion_detector_live_sockets_open") == 0


@pytest.mark.parametrize(
    ("auth", "token", "header", "status"),
    [
        ("required", None, None, 403),  # no token configured: no one, not even a key holder
        ("required", None, "Bearer some-api-key", 403),
        ("required", TOKEN, None, 401),
        ("required", TOKEN, "Bearer wrong-token-000000000000", 403),
        ("required", TOKEN, f"Basic {TOKEN}", 401),
        ("required", TOKEN, f"Bearer {TOKEN}", 200),
        ("off", TOKEN, None, 401),  # a token set is a token asked for, whatever the auth mode
        ("off", TOKEN, f"Bearer {TOKEN}", 200),
        ("off", None, None, 200),  # a laptop
    ],
)
def test_who_may_read_the_metrics(tmp_path, auth, token, header, status):
    app = create_app({"model_server": "inprocess", "environment": "test", "instance_dir": tmp_path, "auth": auth, "metrics_token": token})
    answer = app.test_client().get("/metrics", headers={"Authorization": header} if header else {})
    assert answer.status_code == status, answer.get_data(as_text=True)
    if status == 200:
        assert value(answer.get_data(as_text=True), "emotion_detector_live_sockets_open") == 0
    else:
        assert answer.get_json()["error"]["code"] in ("unauthorized", "forbidden")
        assert "emotion_detector_" not in answer.get_data(as_text=True)
    if status == 401:
        assert answer.headers["WWW-Authenticate"] == "Bearer"


def test_a_short_metrics_token_is_refused_at_start(tmp_path):
    with pytest.raises(ValueError, match="metrics_token"):
        create_app({"model_server": "inprocess", "environment": "test", "instance_dir": tmp_path, "metrics_token": "short"})


def test_the_grafana_dashboard_asks_only_for_metrics_that_exist(app):
    from prometheus_client import generate_latest
    from prometheus_client.parser import text_string_to_metric_families

    from emotion_detector import metrics
    from serving.metrics import serving_metrics

    metrics.worker()  # created on a worker's first task; here, so that they are exposed too
    exposed = scrape(app) + generate_latest(serving_metrics().registry).decode()
    families = {family.name for family in text_string_to_metric_families(exposed)}
    known = {family + suffix for family in families for suffix in ("", "_total", "_bucket", "_count", "_sum")}
    dashboard = json.loads((ROOT / "deploy" / "grafana-dashboard.json").read_text())
    asked = {
        name
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        for name in re.findall(r"\b(?:emotion_detector|tfserving)_\w+", target["expr"])
    }
    assert len(asked) >= 10
    assert asked <= known, asked - known
