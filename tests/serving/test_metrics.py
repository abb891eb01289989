"""The model server's Prometheus metrics at TF Serving's path, after real predictions over REST (Flask's
test client) and gRPC (the real wire protocol, on a thread of this process)."""

from __future__ import annotations

import grpc
import pytest

from serving.metrics import METRICS_PATH
from serving.protocol.protos import tensorflow_serving_pb2 as tfs
from serving.protocol.protos import tensorflow_serving_pb2_grpc as tfs_grpc
from serving.protocol.tensors import from_numpy
from serving.registry import ModelRegistry, discover
from serving.rest_api import create_rest_app
from tests.conftest import SHIPPED_MODELS
from tests.prometheus import label_values, value

COUNT = "tfserving_request_count_total"
LATENCY = "tfserving_request_latency_seconds_count"


@pytest.fixture(scope="module")
def client():
    registry = ModelRegistry(discover(SHIPPED_MODELS))
    registry.refresh()
    return create_rest_app(registry).test_client()


def scrape(client) -> str:
    answer = client.get(METRICS_PATH)
    assert answer.status_code == 200 and answer.content_type.startswith("text/plain")
    return answer.get_data(as_text=True)


def test_rest_predictions_are_counted_per_model_and_version(client, fer_faces):
    version = client.get("/v1/models/emotion").get_json()["model_version_status"][0]["version"]
    before = scrape(client)
    for _ in range(3):
        assert client.post("/v1/models/emotion:predict", json={"instances": fer_faces[:2].tolist()}).status_code == 200
    after = scrape(client)
    labels = {"model_name": "emotion", "version": version, "entrypoint": "REST"}
    assert value(after, COUNT, **labels, status="OK") - value(before, COUNT, **labels, status="OK") == 3
    assert value(after, LATENCY, **labels) - value(before, LATENCY, **labels) == 3


def test_errors_are_counted_by_status_and_a_client_cannot_make_up_labels(client, fer_faces):
    before = scrape(client)
    assert client.post("/v1/models/made-up-model-7f3a:predict", json={"instances": [[0]]}).status_code == 404
    assert client.post("/v1/models/emotion:predict", json={"instances": [[1, 2], [3]]}).status_code == 400
    after = scrape(client)
    unknown = {"model_name": "", "version": "", "entrypoint": "REST", "status": "NOT_FOUND"}
    assert value(after, COUNT, **unknown) - value(before, COUNT, **unknown) == 1
    invalid = {"model_name": "emotion", "entrypoint": "REST", "status": "INVALID_ARGUMENT"}
    assert value(after, COUNT, **invalid) - value(before, COUNT, **invalid) == 1
    assert "made-up-model" not in after
    assert label_values(after, "model_name") <= {"", *(path.name for path in SHIPPED_MODELS.iterdir() if path.is_dir())}


def test_grpc_predictions_are_counted_with_their_entrypoint(client, thread_model_server, fer_faces):
    before = scrape(client)
    request = tfs.PredictRequest()
    request.model_spec.name = "emotion"
    request.inputs["image"].CopyFrom(from_numpy(fer_faces[:1]))
    with grpc.insecure_channel(thread_model_server.grpc_target) as channel:
        answer = tfs_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    after = scrape(client)  # one process, one set of metrics: the REST port shows gRPC's too
    labels = {"model_name": "emotion", "version": str(answer.model_spec.version.value), "entrypoint": "GRPC", "status": "OK"}
    assert value(after, COUNT, **labels) - value(before, COUNT, **labels) == 1
