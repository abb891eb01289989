"""Prometheus metrics of the web app and the video workers: what they count, and how a process exposes them.

Labels are bounded by the code, never by the data: route (the Flask URL rule, not the path), method, status,
mode, stage, outcome, state, task. No face, file name, video id or key ever becomes a label.

Multi-process mode: gunicorn's workers and Celery's pool processes each count in their own memory, so a
scrape of one of them would see a fraction. With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus_client keeps
every process's values in files there and a ``MultiProcessCollector`` adds them up at scrape time. The
client decides which kind of value to use when it is *imported*: this module therefore imports it only on
first use (``use_multiprocess_dir`` must run before that: gunicorn.conf.py, the worker's start), and a
process that never sets the directory (the Flask test client, the dev server) counts in memory.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
    from prometheus_client.metrics_core import Metric

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
NAMESPACE = "emotion_detector"
# The pipeline's stages take from a fraction of a millisecond (track, smooth) to seconds (a large picture's
# search): buckets from 0.5 ms to 10 s.
STAGE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
REQUEST_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TASK_BUCKETS_S = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
_METRIC_FILE_PREFIXES = ("counter_", "gauge_", "histogram_", "summary_")


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


def use_multiprocess_dir(prefix: str = "emotion-detector-metrics-") -> tuple[Path, bool]:
    """Make this process (and those it forks) count in multi-process mode: the configured
    ``PROMETHEUS_MULTIPROC_DIR`` emptied of earlier runs' metric files, else a fresh temporary directory.
    Returns the directory and whether it was made here (the caller removes it at exit). Fails fast when
    prometheus_client was imported already: its values would silently stay in this process's memory."""
    if "prometheus_client" in sys.modules and not os.environ.get(MULTIPROC_ENV):
        raise RuntimeError(f"prometheus_client was imported before {MULTIPROC_ENV} was set: call use_multiprocess_dir first")
    configured = os.environ.get(MULTIPROC_ENV)
    if configured:
        path = Path(configured)
        path.mkdir(parents=True, exist_ok=True)
        # A dead run's files would add its counts and, worse, its "live" gauges to this run's.
        for stale in path.glob("*.db"):
            if stale.name.startswith(_METRIC_FILE_PREFIXES):
                stale.unlink(missing_ok=True)
        return path, False
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.environ[MULTIPROC_ENV] = str(path)
    return path, True


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROC_ENV))


def mark_process_dead(pid: int) -> None:
    """A finished worker's live gauges (open sockets) no longer count (gunicorn's child_exit)."""
    if multiprocess():
        from prometheus_client import multiprocess as prometheus_multiprocess

        prometheus_multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client


@functools.cache
def process_registry() -> CollectorRegistry:
    """Where this process's metrics are registered (what a single-process scrape reads)."""
    from prometheus_client import CollectorRegistry

    return CollectorRegistry(auto_describe=True)


class _Collected:
    """Another registry's metrics, as one collector of a scrape's registry."""

    def __init__(self, source: CollectorRegistry) -> None:
        self.source = source

    def collect(self) -> Iterable[Metric]:
        return self.source.collect()


def scrape_registry(*extra: Collector) -> CollectorRegistry:
    """What a scrape reads: every process's values (multi-process mode) or this process's, plus ``extra``
    collectors computed at scrape time (e.g. video jobs by state, from the database)."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    if multiprocess():
        MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated in prometheus_client
    else:
        registry.register(_Collected(process_registry()))
    for collector in extra:
        registry.register(collector)
    return registry


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The text format Prometheus scrapes, and its content type."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(registry), CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class WebMetrics:
    requests: Counter  # route, method, status
    request_duration: Histogram  # route, method (not the live socket: its "request" lasts the whole stream)
    live_sockets: Gauge
    live_frames_answered: Counter  # outcome: result | error
    live_frames_dropped: Counter
    stage_duration: Histogram  # mode: live | image; stage: the pipeline's timing_ms keys

    def observe_stages(self, mode: str, timing_ms: dict[str, float]) -> None:
        """The pipeline's own timings (FrameAnalysis.timing_ms), measured once, reported twice."""
        for stage, milliseconds in timing_ms.items():
            self.stage_duration.labels(mode, stage).observe(milliseconds / 1000)


@functools.cache
def web() -> WebMetrics:
    from prometheus_client import Counter, Gauge, Histogram

    registry = process_registry()
    return WebMetrics(
        requests=Counter(
            "http_requests", "HTTP requests answered, by route", ["route", "method", "status"], namespace=NAMESPACE, registry=registry
        ),
        request_duration=Histogram(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by route",
            ["route", "method"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=REQUEST_BUCKETS_S,
        ),
        # livesum: the open sockets of the worker processes alive now (a dead worker's count goes with it).
        live_sockets=Gauge(
            "live_sockets_open", "Live websockets open now", namespace=NAMESPACE, registry=registry, multiprocess_mode="livesum"
        ),
        live_frames_answered=Counter(
            "live_frames_answered", "Live frames analysed and answered", ["outcome"], namespace=NAMESPACE, registry=registry
        ),
        live_frames_dropped=Counter(
            "live_frames_dropped", "Live frames dropped unanswered (a newer frame came first)", namespace=NAMESPACE, registry=registry
        ),
        stage_duration=Histogram(
            "stage_duration_seconds",
            "Time a frame or image spent in each stage of the pipeline",
            ["mode", "stage"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=STAGE_BUCKETS_S,
        ),
    )


@dataclass(frozen=True)
class WorkerMetrics:
    videos_processed: Counter  # finalised: the job is done
    frames_processed: Counter  # frames of videos analysed (stored segments)
    failures: Counter  # task: segment | render | finalise — it failed its job
    task_duration: Histogram  # task


@functools.cache
def worker() -> WorkerMetrics:
    from prometheus_client import Counter, Histogram

    registry = process_registry()
    return WorkerMetrics(
        videos_processed=Counter("worker_videos_processed", "Video jobs finished (done)", namespace=NAMESPACE, registry=registry),
        frames_processed=Counter(
            "worker_frames_processed", "Video frames analysed (segments stored)", namespace=NAMESPACE, registry=registry
        ),
        failures=Counter("worker_failures", "Video tasks that failed their job, by task", ["task"], namespace=NAMESPACE, registry=registry),
        task_duration=Histogram(
            "worker_task_duration_seconds",
            "Time a video task took, by task (finished ones)",
            ["task"],
            namespace=NAMESPACE,
            registry=registry,
            buckets=TASK_BUCKETS_S,
        ),
    )


def serve(host: str, port: int) -> None:
    """Expose every process's metrics (multi-process mode) on ``host:port`` from a thread of this process
    (a video worker's main process: its pool processes count into the shared directory)."""
    from prometheus_client import start_http_server

    start_http_server(port, addr=host, registry=scrape_registry())
