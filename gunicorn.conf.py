"""gunicorn settings for the web process: gevent workers, so each websocket is a cheap greenlet."""

import logging
import os
import shutil

from emotion_detector import metrics
from emotion_detector.web import server

# Loopback unless told otherwise: a laptop's `make run` is not reachable from the network. Deployments say
# so explicitly (the Dockerfile sets HOST=0.0.0.0; on Heroku `heroku config:set HOST=0.0.0.0`).
bind = f"{os.environ.get('HOST', '127.0.0.1')}:{os.environ.get('PORT', '5000')}"
# gevent's worker, with gunicorn's own error answers (a request line over limit_request_line: 414) as the API's
# JSON, and a hook that reads what is left of a refused upload without holding up the other sockets.
worker_class = "emotion_detector.web.server.GeventWorker"
post_request = server.post_request
# One worker per core: each has its own GIL and event loop, so one busy frame's Python work does not hold up
# the other sockets' answers (bench/live.py, 20 clients on 2 cores: round-trip p99 ~110-120 ms with 2 workers,
# 120-190 ms with 1). Every live socket stays with the worker that accepted it. Cores this process may run
# on (not the host's count); a container CPU quota is not visible here, so deployments set WEB_CONCURRENCY.
workers = int(os.environ.get("WEB_CONCURRENCY", str(min(4, len(os.sched_getaffinity(0))))))
worker_connections = int(os.environ.get("WEB_WORKER_CONNECTIONS", "200"))
# Each worker listens on a socket of its own (SO_REUSEPORT) and the kernel spreads new connections over them.
# On one shared socket the worker that happens to be awake takes them: bench/live.py's 20 websockets ended up
# almost all on one worker (11 s of CPU against 1 s in 20 s of load), one GIL doing every socket's work.
reuse_port = True
# gunicorn's control socket (gunicornc) defaults to one path per user ($HOME/.gunicorn/gunicorn.ctl): a second
# gunicorn on the machine would take it over, and nothing here uses it.
control_socket_disable = True
timeout = 60
graceful_timeout = 10
# Access logs carry paths and status codes only; frames never reach a log.
accesslog = "-" if os.environ.get("ACCESS_LOG") else None


class _NoEmptyListeningLine(logging.Filter):
    """With reuse_port the workers open the sockets and the master has none: its "Listening at: " would be empty."""

    def filter(self, record: logging.LogRecord) -> bool:
        empty = isinstance(record.args, tuple) and bool(record.args) and not str(record.args[0]).strip()
        return not (str(record.msg).startswith("Listening at:") and empty)


_metrics_dir_made: list[str] = []  # the temporary metrics directory made at start, removed at exit


def on_starting(server) -> None:
    server.log.error_log.addFilter(_NoEmptyListeningLine())
    # Prometheus: every worker counts into files in one directory, and /metrics, answered by any one worker,
    # adds them all up (emotion_detector/metrics.py): PROMETHEUS_MULTIPROC_DIR if set (emptied of an earlier
    # run's files now), else a fresh temporary directory. Here, in the master, before any worker imports the app.
    path, made = metrics.use_multiprocess_dir(prefix="emotion-detector-web-metrics-")
    if made:
        _metrics_dir_made.append(str(path))


def when_ready(server) -> None:
    server.log.info("Listening at: http://%s (a socket per worker)", bind)


def child_exit(server, worker) -> None:
    metrics.mark_process_dead(worker.pid)  # its open sockets are closed: the live gauge forgets them


def on_exit(server) -> None:
    for path in _metrics_dir_made:
        shutil.rmtree(path, ignore_errors=True)
