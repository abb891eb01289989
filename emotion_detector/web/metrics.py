"""``GET /metrics``: the web app's Prometheus metrics (emotion_detector/metrics.py says what is counted), for
every gunicorn worker at once, plus video jobs by state read from the database at scrape time.

Who may read it: with EMOTION_METRICS_TOKEN set, a request with ``Authorization: Bearer <token>`` (what
Prometheus sends with ``authorization: {credentials_file: ...}`` in its scrape config); without one, anyone
while auth is off (a laptop) and no one while auth is required: the counts span every user's requests and
videos, so a user's API key does not open it either.
"""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from flask import Blueprint, Flask, Response, current_app, g, request
from flask.typing import ResponseReturnValue
from sqlalchemy import func, select
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from emotion_detector import metrics
from emotion_detector.videos.models import JobState, Video
from emotion_detector.web import services
from emotion_detector.web.security import api_error

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

log = logging.getLogger(__name__)
blueprint = Blueprint("metrics", __name__)

ENDPOINT = "metrics.scrape"
REGISTRY_EXTENSION = "emotion_detector.metrics"
# A client may send any method name: beyond these it is counted as "other", so labels stay bounded.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED_ROUTE = "unmatched"  # no URL rule matched (a 404, a 405 from routing): never the raw path


class VideoJobsCollector:
    """``emotion_detector_video_jobs{state}``: the database's count per state, at scrape time (every web
    process and worker agrees on it, whichever of them is scraped). Nothing while the database is down."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import GaugeMetricFamily  # imported late: see emotion_detector/metrics.py

        try:
            with self.sessions() as session:
                counts = dict(session.execute(select(Video.status, func.count()).group_by(Video.status)).all())
        except DBAPIError as error:
            log.warning("metrics: video jobs not counted, the database is unavailable: %s", error.orig)
            return
        family = GaugeMetricFamily(f"{metrics.NAMESPACE}_video_jobs", "Video jobs by state, read from the database", labels=["state"])
        for state in JobState:
            family.add_metric([state.value], counts.get(state, 0))
        yield family


def install(app: Flask, video_sessions: sessionmaker[Session]) -> None:
    """Count every request by route. Installed before auth, so refused requests (401, 403, 429) count too."""
    metrics.web()  # created now, so that the first scrape already lists them (0 open sockets, ...)
    app.before_request(_started)
    app.after_request(_counted)
    app.register_blueprint(blueprint)
    app.extensions[REGISTRY_EXTENSION] = metrics.scrape_registry(VideoJobsCollector(video_sessions))


def _started() -> None:
    g.metrics_started_s = time.perf_counter()


def _counted(response: Response) -> Response:
    rule = request.url_rule
    route = rule.rule if rule is not None else UNMATCHED_ROUTE
    method = request.method if request.method in METHODS else "other"
    found = metrics.web()
    found.requests.labels(route, method, str(response.status_code)).inc()
    started = g.get("metrics_started_s")
    # A live socket's "request" lasts as long as the stream: its time says nothing about latency.
    if started is not None and request.headers.get("Upgrade", "").lower() != "websocket":
        found.request_duration.labels(route, method).observe(time.perf_counter() - started)
    return response


@blueprint.get("/metrics")
def scrape() -> ResponseReturnValue:
    refused = _refused()
    if refused is not None:
        return refused
    registry: CollectorRegistry = current_app.extensions[REGISTRY_EXTENSION]
    body, content_type = metrics.exposition(registry)
    return Response(body, content_type=content_type)


def _refused() -> ResponseReturnValue | None:
    settings = services().settings
    if settings.metrics_token is None:
        if settings.auth == "off":
            return None
        message = "/metrics is closed while auth is required: set EMOTION_METRICS_TOKEN and scrape with 'Authorization: Bearer <token>'"
        return api_error("forbidden", message, 403)
    scheme, _, secret = request.headers.get("Authorization", "").strip().partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return api_error("unauthorized", "send the metrics token as 'Authorization: Bearer <token>'", 401, {"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(secret.strip().encode(), settings.metrics_token.get_secret_value().encode()):
        return api_error("forbidden", "this is not the metrics token", 403)
    return None
