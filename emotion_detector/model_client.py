"""Client for the model server (TF Serving Predict API over gRPC). It learns each model's input size,
channels, normalisation, labels and face-crop rules from the server's metadata, so the web app never
hard-codes them, and sends one batched request per model per frame, the models in parallel.

Age and gender come from one two-headed network: the server's ``age_gender`` model answers both in one
forward pass, and the client uses it whenever the server has it, falling back to the separate ``age`` and
``gender`` models (the same network's heads, each running the shared trunk again) on servers without it.
Callers ask for *heads* (``emotion``, ``age``, ``gender``), not models.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from serving.protocol.model_info import ModelSpec
from serving.protocol.protos import tensorflow_serving_pb2 as tfs
from serving.protocol.protos import tensorflow_serving_pb2_grpc as tfs_grpc
from serving.protocol.tensors import from_numpy, to_numpy

log = logging.getLogger(__name__)

HEADS = ("emotion", "age", "gender")
# Models to use, in order of preference: the first whose models the server all has.
MODEL_CHOICES = (("emotion", "age_gender"), ("emotion", "age", "gender"))
_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class ModelUnavailable(RuntimeError):
    """The model server cannot be reached (down, restarting, overloaded)."""


class ModelServerError(RuntimeError):
    """The model server answered with an error (a bug on one side: wrong input, missing model)."""


@dataclass
class PendingPrediction:
    client: ModelServerClient
    calls: dict[str, grpc.Future]
    specs: dict[str, ModelSpec]

    def result(self) -> dict[str, np.ndarray]:
        """{head: output array} for the heads of every model asked."""
        outputs, failure = {}, None
        for name, call in self.calls.items():
            try:
                response = call.result()
            except grpc.RpcError as error:
                failure = failure or self.client._translate(error, name)
                continue
            for head, output in self.specs[name].outputs.items():
                outputs[head] = to_numpy(response.outputs[output.tensor])
        if failure:
            self.client._forget_specs()
            raise failure
        return outputs


class ModelServerClient:
    def __init__(self, target: str, timeout_s: float = 2.0, tls: bool = False):
        self.target = target
        self.timeout_s = timeout_s
        # Short reconnect backoff: when the model server comes back, the stream recovers within a second.
        options = [
            ("grpc.initial_reconnect_backoff_ms", 200),
            ("grpc.min_reconnect_backoff_ms", 200),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.max_receive_message_length", 64 * 1024 * 1024),
        ]
        if tls:
            self._channel = grpc.secure_channel(target, grpc.ssl_channel_credentials(), options=options)
        else:
            self._channel = grpc.insecure_channel(target, options=options)
        self._stub = tfs_grpc.PredictionServiceStub(self._channel)
        self._specs: dict[str, ModelSpec] | None = None
        self._lock = threading.Lock()

    def close(self) -> None:
        self._channel.close()

    def specs(self) -> dict[str, ModelSpec]:
        """Metadata of the models in use (see ``MODEL_CHOICES``), fetched once and again after any failure."""
        specs = self._specs
        if specs is None:
            with self._lock:
                if self._specs is None:
                    self._specs = self._fetch_specs()
                specs = self._specs
        return specs

    def labels(self, head: str) -> tuple[str, ...]:
        """The class names of a head's output, in output order, as the server states them."""
        for spec in self.specs().values():
            labels = spec.outputs[head].labels if head in spec.outputs else None
            if labels is not None:
                return labels
        raise ModelServerError(f"no model on {self.target} states labels for {head!r}")

    def uncertain_below(self, head: str) -> float:
        """The top probability under which a head's label is shown as uncertain (0: its model has none)."""
        return next((spec.outputs[head].uncertain_below for spec in self.specs().values() if head in spec.outputs), 0.0)

    def _fetch_specs(self) -> dict[str, ModelSpec]:
        fetched: dict[str, ModelSpec | None] = {}
        for choice in MODEL_CHOICES:
            for name in choice:
                if name not in fetched:
                    fetched[name] = self._fetch_spec(name)
            if all(fetched[name] is not None for name in choice):
                return {name: spec for name in choice if (spec := fetched[name]) is not None}
        missing = sorted(name for name, spec in fetched.items() if spec is None)
        raise ModelServerError(f"model server {self.target} serves none of the model sets {MODEL_CHOICES} (missing: {missing})")

    def check(self) -> None:
        """Ask the server now (the standard gRPC health service) whether it serves; raises ModelUnavailable
        if not. The cached metadata says nothing about whether the server is still there."""
        try:
            answer = health_pb2_grpc.HealthStub(self._channel).Check(health_pb2.HealthCheckRequest(service=""), timeout=self.timeout_s)
        except grpc.RpcError as error:
            raise self._translate(error, "health") from None
        if answer.status != health_pb2.HealthCheckResponse.SERVING:
            raise ModelUnavailable(
                f"model server {self.target} is not serving yet ({health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)})"
            )

    def _fetch_spec(self, name: str) -> ModelSpec | None:
        """The model's metadata, or None if the server does not have it."""
        request = tfs.GetModelMetadataRequest(model_spec=tfs.ModelSpec(name=name), metadata_field=["emotion_detector"])
        try:
            response = self._stub.GetModelMetadata(request, timeout=self.timeout_s)
        except grpc.RpcError as error:
            if error.code() == grpc.StatusCode.NOT_FOUND:
                return None
            raise self._translate(error, name) from None
        info = struct_pb2.Struct()
        response.metadata["emotion_detector"].Unpack(info)
        return ModelSpec.from_metadata(name, response.model_spec.version.value, json_format.MessageToDict(info))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{model name: normalised batch} → {head: output array}; all requests in flight at once."""
        if len(inputs) != 1:
            return self.submit(inputs).result()
        # Most live frames ask one model (expression): a blocking call saves the polling thread that gRPC
        # starts for every future (~0.3 ms a frame here).
        ((name, batch),) = inputs.items()
        specs = self.specs()
        try:
            response = self._stub.Predict(self._request(specs[name], batch), timeout=self.timeout_s)
        except grpc.RpcError as error:
            self._forget_specs()
            raise self._translate(error, name) from None
        return {head: to_numpy(response.outputs[output.tensor]) for head, output in specs[name].outputs.items()}

    def submit(self, inputs: dict[str, np.ndarray]) -> PendingPrediction:
        """Send the requests and return at once; ``.result()`` waits for the answers."""
        specs = self.specs()
        calls = {
            name: self._stub.Predict.future(self._request(specs[name], batch), timeout=self.timeout_s) for name, batch in inputs.items()
        }
        return PendingPrediction(self, calls, specs)

    @staticmethod
    def _request(spec: ModelSpec, batch: np.ndarray) -> tfs.PredictRequest:
        request = tfs.PredictRequest(model_spec=tfs.ModelSpec(name=spec.name))
        request.inputs[spec.input_name].CopyFrom(from_numpy(batch))
        return request

    def _forget_specs(self) -> None:
        self._specs = None  # the server may have restarted with other models; ask again next time

    def _translate(self, error: grpc.RpcError, model: str) -> Exception:
        if error.code() in _UNAVAILABLE:
            return ModelUnavailable(f"model server {self.target} unavailable ({error.code().name}): {error.details()}")
        return ModelServerError(f"model server error for {model} ({error.code().name}): {error.details()}")
