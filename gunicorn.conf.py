"""gunicorn settings for the web process: gevent workers, so each websocket is a cheap greenlet."""

import os

bind = f"{os.environ.get('HOST', '0.0.0.0')}:{os.environ.get('PORT', '5000')}"
worker_class = "gevent"
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "200"))
timeout = 60
graceful_timeout = 10
# Access logs carry paths and status codes only; frames never reach a log.
accesslog = "-" if os.environ.get("ACCESS_LOG") else None
