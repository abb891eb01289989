"""TF Serving's REST API (https://www.tensorflow.org/tfx/serving/api_rest) as a Flask app:

    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]             model status
    GET  /v1/models/{name}[/versions/{v}|/labels/{l}]/metadata    signature + preprocessing (model.json)
    POST /v1/models/{name}[/versions/{v}|/labels/{l}]:predict     row ("instances") or columnar ("inputs")
    GET  /healthz, /readyz                                        liveness, readiness (all models loaded)
    GET  /monitoring/prometheus/metrics                           Prometheus metrics (serving/metrics.py)

Errors are ``{"error": "..."}`` with the HTTP status of the gRPC code (404 NOT_FOUND, 400 INVALID_ARGUMENT).
"""

from __future__ import annotations

import logging

import numpy as np
import orjson
from flask import Flask, Response, request
from google.protobuf import json_format
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from werkzeug.exceptions import HTTPException

from serving.metrics import METRICS_PATH, observed_predict, serving_metrics
from serving.protocol.errors import InvalidArgument, ServingError, Unimplemented, alias_not_found
from serving.protocol.protos import tensorflow_serving_pb2 as tfs
from serving.registry import SIGNATURE_NAME, ModelRegistry, ServedModel

log = logging.getLogger("serving.rest")

MAX_REQUEST_BYTES = 64 * 1024 * 1024


def json_response(body, status: int = 200) -> Response:
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY), status=status, mimetype="application/json")


def create_rest_app(registry: ModelRegistry) -> Flask:
    app = Flask("serving.rest")
    app.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES

    @app.errorhandler(ServingError)
    def serving_error(error: ServingError):
        return json_response({"error": error.message}, error.http_status)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException):
        return json_response({"error": f"{error.name}: {error.description}"}, error.code or 500)

    @app.errorhandler(Exception)
    def unexpected(error: Exception):
        log.exception("unexpected error")
        return json_response({"error": f"{type(error).__name__}: {error}"}, 500)

    def pick(name: str, version: str | None, label: str | None) -> ServedModel:
        return registry.resolve(name, version=int(version) if version is not None else None, label=label)

    @app.get("/v1/models/<name>")
    @app.get("/v1/models/<name>/versions/<int:version>")
    @app.get("/v1/models/<name>/labels/<label>")
    def model_status(name: str, version: int | None = None, label: str | None = None):
        if label is not None:
            version = pick(name, None, label).version
        statuses = []
        for state in registry.status(name, version):
            statuses.append(
                {
                    "version": str(state.version),
                    "state": "AVAILABLE" if state.model else "END",
                    "status": {"error_code": "OK" if state.model else "INTERNAL", "error_message": state.error},
                }
            )
        return json_response({"model_version_status": statuses})

    @app.get("/v1/models/<name>/metadata")
    @app.get("/v1/models/<name>/versions/<version>/metadata")
    @app.get("/v1/models/<name>/labels/<label>/metadata")
    def model_metadata(name: str, version: str | None = None, label: str | None = None):
        if version is not None and not version.isdigit():
            raise InvalidArgument(f"version must be an integer, got {version!r}")
        model = pick(name, version, label)
        signatures = tfs.SignatureDefMap()
        signatures.signature_def[SIGNATURE_NAME].CopyFrom(model.signature_def())
        return json_response(
            {
                "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
                "metadata": {
                    "signature_def": json_format.MessageToDict(signatures, preserving_proto_field_name=True),
                    "emotion_detector": model.metadata,
                },
            }
        )

    @app.post("/v1/models/<name>:<verb>")
    @app.post("/v1/models/<name>/versions/<version>:<verb>")
    @app.post("/v1/models/<name>/labels/<label>:<verb>")
    def model_verb(name: str, verb: str, version: str | None = None, label: str | None = None):
        if verb in ("classify", "regress"):
            raise Unimplemented(f"{verb} is not served here; use :predict")
        if verb != "predict":
            raise InvalidArgument(f"unknown method :{verb}; expected :predict")
        with observed_predict("REST") as call:
            if version is not None and not version.isdigit():
                raise InvalidArgument(f"version must be an integer, got {version!r}")
            call.model = pick(name, version, label)
            return predict(call.model)

    def predict(model: ServedModel) -> Response:
        try:
            body = orjson.loads(request.get_data())
        except orjson.JSONDecodeError as error:
            raise InvalidArgument(f"JSON Parse error: {error}") from None
        if not isinstance(body, dict):
            raise InvalidArgument("request body must be a JSON object with 'instances' or 'inputs'")
        if body.get("signature_name", SIGNATURE_NAME) not in ("", SIGNATURE_NAME):
            raise InvalidArgument(f'Serving signature key "{body["signature_name"]}" not found; this model has "{SIGNATURE_NAME}"')
        if ("instances" in body) == ("inputs" in body):
            raise InvalidArgument("request must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
        if "instances" in body:
            outputs = model.predict(rows_to_arrays(model, body["instances"]))
            if len(outputs) == 1:
                return json_response({"predictions": next(iter(outputs.values()))})
            count = len(next(iter(outputs.values())))
            return json_response({"predictions": [{k: v[i] for k, v in outputs.items()} for i in range(count)]})
        outputs = model.predict(columns_to_arrays(model, body["inputs"]))
        return json_response({"outputs": next(iter(outputs.values())) if len(outputs) == 1 else outputs})

    @app.get(METRICS_PATH)
    def prometheus_metrics():
        return Response(generate_latest(serving_metrics().registry), content_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz")
    def healthz():
        return json_response({"status": "ok"})

    @app.get("/readyz")
    def readyz():
        ready = registry.ready
        return json_response({"ready": ready, "models": registry.names()}, 200 if ready else 503)

    return app


def _array(value, dtype: np.dtype, what: str) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=dtype)
    except (ValueError, TypeError):
        raise InvalidArgument(f"{what} must be a rectangular (non-ragged) array of numbers for {dtype}") from None
    return array


def rows_to_arrays(model: ServedModel, instances) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument("'instances' must be a non-empty list, one entry per example")
    names = [spec.name for spec in model.inputs]
    if all(isinstance(row, dict) for row in instances):
        keys = {frozenset(row) for row in instances}
        if len(keys) != 1 or set(next(iter(keys))) != set(names):
            raise InvalidArgument(f"every instance must have exactly the inputs {names}")
        return {spec.name: _array([row[spec.name] for row in instances], spec.dtype, f"input '{spec.name}'") for spec in model.inputs}
    if len(names) != 1:
        raise InvalidArgument(f"this model has several inputs {names}: each instance must be an object naming them")
    spec = model.inputs[0]
    return {spec.name: _array(instances, spec.dtype, "'instances'")}


def columns_to_arrays(model: ServedModel, inputs) -> dict[str, np.ndarray]:
    names = [spec.name for spec in model.inputs]
    if isinstance(inputs, dict):
        unknown = sorted(set(inputs) - set(names))
        if unknown:
            raise alias_not_found("input", unknown, names)
        return {spec.name: _array(inputs[spec.name], spec.dtype, f"input '{spec.name}'") for spec in model.inputs if spec.name in inputs}
    if len(names) != 1:
        raise InvalidArgument(f"this model has several inputs {names}: 'inputs' must be an object naming them")
    return {names[0]: _array(inputs, model.inputs[0].dtype, "'inputs'")}
