"""Prometheus metrics of the model server, at TF Serving's own path on the REST port:
``GET /monitoring/prometheus/metrics`` (TF Serving serves it there when its monitoring config enables it).

TF Serving calls them ``:tensorflow:serving:request_count`` and ``:tensorflow:serving:request_latency``
(microseconds); names starting with a colon are reserved for recording rules, so here they are:

    tfserving_request_count_total{model_name, version, entrypoint, status}   Predict requests (gRPC and REST)
    tfserving_request_latency_seconds{model_name, version, entrypoint}       time to answer a successful one

``entrypoint`` is ``GRPC`` or ``REST`` (TF Serving's values), ``status`` the gRPC status code's name (``OK``,
``INVALID_ARGUMENT``, ``NOT_FOUND``, ...). A request naming no served model counts with empty model_name and
version: a client cannot make a label of its own choosing. The model server is one process (threads), so
its metrics live in a registry of its own, never in a multi-process directory.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
from prometheus_client import CollectorRegistry, Counter, Histogram

from serving.protocol.errors import ServingError
from serving.registry import ServedModel

METRICS_PATH = "/monitoring/prometheus/metrics"
# One face takes about a millisecond; a batch of many on a busy machine, up to seconds.
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class ServingMetrics:
    registry: CollectorRegistry
    requests: Counter
    latency: Histogram


@functools.cache
def serving_metrics() -> ServingMetrics:
    registry = CollectorRegistry(auto_describe=True)
    return ServingMetrics(
        registry,
        Counter(
            "tfserving_request_count",
            "Predict requests, by model, version, entrypoint and status",
            ["model_name", "version", "entrypoint", "status"],
            registry=registry,
        ),
        Histogram(
            "tfserving_request_latency_seconds",
            "Time to answer a successful Predict request, by model, version and entrypoint",
            ["model_name", "version", "entrypoint"],
            registry=registry,
            buckets=LATENCY_BUCKETS_S,
        ),
    )


class PredictCall:
    """What a Predict request resolved to, for its labels (set once the model is known)."""

    model: ServedModel | None = None


@contextlib.contextmanager
def observed_predict(entrypoint: str) -> Iterator[PredictCall]:
    """Count one Predict request (and time it, when it succeeds); an error still propagates."""
    call = PredictCall()
    started = time.perf_counter()
    status = grpc.StatusCode.INTERNAL
    try:
        yield call
        status = grpc.StatusCode.OK
    except ServingError as error:
        status = error.code
        raise
    finally:
        model_name, version = (call.model.name, str(call.model.version)) if call.model is not None else ("", "")
        found = serving_metrics()
        found.requests.labels(model_name, version, entrypoint, status.name).inc()
        if status is grpc.StatusCode.OK:
            found.latency.labels(model_name, version, entrypoint).observe(time.perf_counter() - started)
