"""The web front end: ``create_app`` is the Flask app factory
(gunicorn: ``emotion_detector.web.app:create_app()``; in a checkout also ``app:create_app()``).

Pages and the live websocket are in emotion_detector/web/live.py, the REST API in emotion_detector/web/api.py,
the edge devices' dashboard in emotion_detector/web/dashboard.py;
the analysis itself (decode, detect, track, model server) lives in emotion_detector/pipeline.py. Templates and
static files are package data beside this module (emotion_detector/web/templates, .../static), so an installed
package serves them from site-packages.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from flask import Flask
from flask.typing import ResponseReturnValue

from emotion_detector.accounts.keys import Keys
from emotion_detector.accounts.recent import RecentlyVerified
from emotion_detector.detection import DetectorOptions, FaceDetector, create_detector
from emotion_detector.face_models import FaceModels, create_models
from emotion_detector.pipeline import FaceAnalyzer
from emotion_detector.settings import Settings
from emotion_detector.videos.db import SchemaUpgrade
from emotion_detector.videos.service import VideoService
from emotion_detector.web import api, auth, dashboard, ids, images, live, openapi, reports, security, videos
from emotion_detector.web import metrics as metrics_view
from emotion_detector.web.native import BackgroundThread


@dataclass(frozen=True)
class Services:
    settings: Settings
    detector: FaceDetector
    client: FaceModels
    analyzer: FaceAnalyzer
    videos: VideoService
    keys: Keys


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    _cooperate_with_gevent()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(**(test_config or {}))
    app = Flask(__name__)  # templates/ and static/ are found beside this module
    app.config.update(SECRET_KEY=settings.secret_key, MAX_CONTENT_LENGTH=settings.max_image_bytes + 64 * 1024)

    detector = create_detector(DetectorOptions.from_settings(settings, default_threads=1))  # many streams share the cores
    client = create_models(settings)
    analyzer = FaceAnalyzer(detector, client, settings, background=BackgroundThread())
    # The schema is brought up to date in the background, retried while the database is down: the app starts
    # and serves what needs no database (live and image analysis) meanwhile; the rest answers 503.
    video_service = VideoService(settings, SchemaUpgrade(settings.database_url).start())
    keys = Keys(video_service.sessions, RecentlyVerified(settings.auth_cache_s, settings.auth_outage_grace_s))
    app.extensions["emotion_detector"] = Services(settings, detector, client, analyzer, video_service, keys)

    # Oversized frames must reach the handler (and get a frame_too_large answer) rather than close the socket.
    app.config["SOCK_SERVER_OPTIONS"] = {"max_message_size": max(64 * 1024 * 1024, 2 * settings.max_frame_bytes)}

    @app.context_processor
    def face_detector() -> dict[str, FaceDetector]:  # every page says when detection runs on the degraded fallback
        return {"face_detector": detector}

    @app.get("/favicon.ico")
    def favicon() -> ResponseReturnValue:
        # Pages name their icon; a browser still asks for this one on what has no <link rel="icon"> (the
        # reports, the PDF viewer), and a 404 there is a failed request in its console.
        return app.send_static_file("favicon.svg")

    ids.install(app)
    security.install(app, production=settings.environment == "production")
    metrics_view.install(app, video_service.sessions)  # before auth: refused requests are counted too
    auth.install(app, settings)
    live.sock.init_app(app)
    app.register_blueprint(live.blueprint)
    app.register_blueprint(live.socket_blueprint)
    app.register_blueprint(api.blueprint)
    app.register_blueprint(videos.blueprint)
    app.register_blueprint(reports.blueprint)
    app.register_blueprint(dashboard.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(images.blueprint)
    return app


def _cooperate_with_gevent() -> None:
    """Under gunicorn's gevent workers, let gRPC yield to other greenlets instead of blocking the loop."""
    try:
        from gevent import monkey
    except ImportError:
        return
    if monkey.is_module_patched("socket"):
        import grpc.experimental.gevent

        grpc.experimental.gevent.init_gevent()
