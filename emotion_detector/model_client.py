"""Client for the model server (TF Serving Predict API over gRPC). It learns each model's input size,
channels, normalisation, labels and face-crop rules from the server's metadata, so the web app never
hard-codes them, and sends one batched request per model per frame, the three models in parallel."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

import grpc
import numpy as np
from google.protobuf import json_format, struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

from emotion_detector.crops import CropRule
from serving.protos import tensorflow_serving_pb2 as tfs
from serving.protos import tensorflow_serving_pb2_grpc as tfs_grpc
from serving.tensors import from_numpy, to_numpy

log = logging.getLogger(__name__)

FACE_MODELS = ("emotion", "age", "gender")
_UNAVAILABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED}


class ModelUnavailable(RuntimeError):
    """The model server cannot be reached (down, restarting, overloaded)."""


class ModelServerError(RuntimeError):
    """The model server answered with an error (a bug on one side: wrong input, missing model)."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    input_name: str
    output_name: str
    size: int
    grey: bool
    mean: float
    std: float
    labels: tuple[str, ...] | None
    crop_rules: dict[str, CropRule]

    @classmethod
    def from_metadata(cls, name: str, version: int, info: dict) -> ModelSpec:
        shape = [int(d) for d in info["input"]["shape"]]
        norm = info["input"]["normalization"]
        measured = info["input"].get("face_crop")
        rules = {d: CropRule.from_dict(rule) for d, rule in measured.items()} if isinstance(measured, dict) else {}
        return cls(
            name=name,
            version=version,
            input_name=info["input"]["name"],
            output_name=info["output"]["name"],
            size=shape[1],
            grey=shape[3] == 1,
            mean=float(norm["mean"]),
            std=float(norm["std"]),
            labels=tuple(info["output"]["labels"]) if "labels" in info["output"] else None,
            crop_rules=rules,
        )

    def crop_rule(self, detector: str) -> CropRule:
        return self.crop_rules.get(detector, CropRule())

    def normalise(self, crops_uint8: np.ndarray) -> np.ndarray:
        return ((crops_uint8.astype(np.float32) / 255 - self.mean) / self.std).astype(np.float32)


@dataclass
class PendingPrediction:
    client: ModelServerClient
    calls: dict[str, grpc.Future]
    specs: dict[str, ModelSpec]

    def result(self) -> dict[str, np.ndarray]:
        outputs, failure = {}, None
        for name, call in self.calls.items():
            try:
                outputs[name] = to_numpy(call.result().outputs[self.specs[name].output_name])
            except grpc.RpcError as error:
                failure = failure or self.client._translate(error, name)
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
        """Metadata of the three face models, fetched once and again after any failure."""
        specs = self._specs
        if specs is None:
            with self._lock:
                if self._specs is None:
                    self._specs = {name: self._fetch_spec(name) for name in FACE_MODELS}
                specs = self._specs
        return specs

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

    def _fetch_spec(self, name: str) -> ModelSpec:
        request = tfs.GetModelMetadataRequest(model_spec=tfs.ModelSpec(name=name), metadata_field=["emotion_detector"])
        try:
            response = self._stub.GetModelMetadata(request, timeout=self.timeout_s)
        except grpc.RpcError as error:
            raise self._translate(error, name) from None
        info = struct_pb2.Struct()
        response.metadata["emotion_detector"].Unpack(info)
        return ModelSpec.from_metadata(name, response.model_spec.version.value, json_format.MessageToDict(info))

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{model name: normalised batch} → {model name: output array}; all requests in flight at once."""
        return self.submit(inputs).result()

    def submit(self, inputs: dict[str, np.ndarray]) -> PendingPrediction:
        """Send the requests and return at once; ``.result()`` waits for the answers."""
        specs = self.specs()
        calls = {}
        for name, batch in inputs.items():
            request = tfs.PredictRequest(model_spec=tfs.ModelSpec(name=name))
            request.inputs[specs[name].input_name].CopyFrom(from_numpy(batch))
            calls[name] = self._stub.Predict.future(request, timeout=self.timeout_s)
        return PendingPrediction(self, calls, specs)

    def _forget_specs(self) -> None:
        self._specs = None  # the server may have restarted with other models; ask again next time

    def _translate(self, error: grpc.RpcError, model: str) -> Exception:
        if error.code() in _UNAVAILABLE:
            return ModelUnavailable(f"model server {self.target} unavailable ({error.code().name}): {error.details()}")
        return ModelServerError(f"model server error for {model} ({error.code().name}): {error.details()}")
