"""gRPC front end: tensorflow.serving.PredictionService (Predict, GetModelMetadata) and ModelService
(GetModelStatus), plus the standard grpc.health.v1 service."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from concurrent import futures

import grpc
from google.protobuf import any_pb2, json_format, struct_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from serving.metrics import observed_predict
from serving.protocol.errors import InvalidArgument, ServingError
from serving.protocol.protos import tensorflow_serving_pb2 as tfs
from serving.protocol.protos import tensorflow_serving_pb2_grpc as tfs_grpc
from serving.protocol.tensors import from_numpy, to_numpy
from serving.registry import SIGNATURE_NAME, ModelRegistry, ServedModel

log = logging.getLogger("serving.grpc")

METADATA_FIELDS = ("signature_def", "emotion_detector")
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


@contextlib.contextmanager
def _status_on_error(context: grpc.ServicerContext) -> Iterator[None]:
    """Turn our errors into gRPC status codes; anything unexpected becomes INTERNAL, never a crash."""
    try:
        yield
    except ServingError as error:
        context.abort(error.code, error.message)
    except Exception as error:
        log.exception("unexpected error")
        context.abort(grpc.StatusCode.INTERNAL, f"{type(error).__name__}: {error}")


def resolve(registry: ModelRegistry, spec: tfs.ModelSpec) -> ServedModel:
    if spec.signature_name not in ("", SIGNATURE_NAME):
        raise InvalidArgument(f'Serving signature key "{spec.signature_name}" not found; this model has "{SIGNATURE_NAME}"')
    choice = spec.WhichOneof("version_choice")
    return registry.resolve(
        spec.name,
        version=spec.version.value if choice == "version" else None,
        label=spec.version_label if choice == "version_label" else None,
    )


def answered_spec(model: ServedModel) -> tfs.ModelSpec:
    spec = tfs.ModelSpec(name=model.name, signature_name=SIGNATURE_NAME)
    spec.version.value = model.version
    return spec


class PredictionService(tfs_grpc.PredictionServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def Predict(self, request: tfs.PredictRequest, context: grpc.ServicerContext) -> tfs.PredictResponse:
        with _status_on_error(context), observed_predict("GRPC") as call:
            call.model = model = resolve(self.registry, request.model_spec)
            inputs = {name: to_numpy(tensor, f"input '{name}'") for name, tensor in request.inputs.items()}
            outputs = model.predict(inputs, list(request.output_filter))
            response = tfs.PredictResponse(model_spec=answered_spec(model))
            for name, array in outputs.items():
                response.outputs[name].CopyFrom(from_numpy(array))
            return response

    def GetModelMetadata(self, request: tfs.GetModelMetadataRequest, context: grpc.ServicerContext) -> tfs.GetModelMetadataResponse:
        with _status_on_error(context):
            model = resolve(self.registry, request.model_spec)
            fields = list(request.metadata_field) or list(METADATA_FIELDS)
            unsupported = sorted(set(fields) - set(METADATA_FIELDS))
            if unsupported:
                raise InvalidArgument(f"Metadata field(s) {', '.join(unsupported)} not supported; supported: {', '.join(METADATA_FIELDS)}")
            response = tfs.GetModelMetadataResponse(model_spec=answered_spec(model))
            if "signature_def" in fields:
                signatures = tfs.SignatureDefMap()
                signatures.signature_def[SIGNATURE_NAME].CopyFrom(model.signature_def())
                response.metadata["signature_def"].Pack(signatures)
            if "emotion_detector" in fields:
                info = any_pb2.Any()
                info.Pack(json_format.ParseDict(model.metadata, struct_pb2.Struct()))
                response.metadata["emotion_detector"].CopyFrom(info)
            return response


class ModelService(tfs_grpc.ModelServiceServicer):
    def __init__(self, registry: ModelRegistry):
        self.registry = registry

    def GetModelStatus(self, request: tfs.GetModelStatusRequest, context: grpc.ServicerContext) -> tfs.GetModelStatusResponse:
        with _status_on_error(context):
            spec = request.model_spec
            version = spec.version.value if spec.WhichOneof("version_choice") == "version" else None
            response = tfs.GetModelStatusResponse()
            for state in self.registry.status(spec.name, version):
                status = response.model_version_status.add(version=state.version)
                if state.model:
                    status.state = tfs.ModelVersionStatus.AVAILABLE
                else:
                    status.state = tfs.ModelVersionStatus.END
                    status.status.error_code = 13  # INTERNAL: the version failed to load
                    status.status.error_message = state.error
            return response


def build_server(registry: ModelRegistry, address: str, max_workers: int = 16) -> tuple[grpc.Server, health.HealthServicer]:
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc"),
        options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES), ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)],
    )
    tfs_grpc.add_PredictionServiceServicer_to_server(PredictionService(registry), server)
    tfs_grpc.add_ModelServiceServicer_to_server(ModelService(registry), server)
    health_servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    if server.add_insecure_port(address) == 0:
        raise OSError(f"cannot bind gRPC to {address}")
    return server, health_servicer


def set_health(health_servicer: health.HealthServicer, ready: bool) -> None:
    status = health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
    for service in ("", "tensorflow.serving.PredictionService"):
        health_servicer.set(service, status)
