"""TF Serving's REST API on the shipped models, through Flask's test client (in-process, fast)."""

from __future__ import annotations

import numpy as np
import pytest

from serving.registry import ModelRegistry, discover
from serving.rest_api import create_rest_app
from tests.conftest import SHIPPED_MODELS


@pytest.fixture(scope="module")
def client():
    registry = ModelRegistry(discover(SHIPPED_MODELS))
    registry.refresh()
    return create_rest_app(registry).test_client()


def test_model_status_lists_available_versions(client):
    answer = client.get("/v1/models/emotion")
    assert answer.status_code == 200
    statuses = answer.get_json()["model_version_status"]
    assert statuses and all(s["state"] == "AVAILABLE" and s["status"]["error_code"] == "OK" for s in statuses)


def test_metadata_has_signature_and_preprocessing(client):
    body = client.get("/v1/models/gender/metadata").get_json()
    signature = body["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["image"]["dtype"] == "DT_FLOAT"
    assert [d["size"] for d in signature["inputs"]["image"]["tensor_shape"]["dim"]] == ["-1", "64", "64", "3"]
    info = body["metadata"]["emotion_detector"]
    assert info["output"]["labels"] == ["female", "male"]
    assert info["input"]["color"] == "RGB"


def test_a_version_is_reachable_by_url(client, fer_faces):
    version = client.get("/v1/models/emotion").get_json()["model_version_status"][0]["version"]
    answer = client.post(f"/v1/models/emotion/versions/{version}:predict", json={"instances": fer_faces[:2].tolist()})
    assert answer.status_code == 200
    assert np.asarray(answer.get_json()["predictions"]).shape == (2, 7)


def test_named_row_instances_are_accepted(client, fer_faces):
    answer = client.post("/v1/models/emotion:predict", json={"instances": [{"image": face.tolist()} for face in fer_faces[:3]]})
    assert answer.status_code == 200
    assert len(answer.get_json()["predictions"]) == 3


@pytest.mark.parametrize(
    ("path", "body", "status", "words"),
    [
        ("/v1/models/nope:predict", {"instances": [[0]]}, 404, ["nope"]),
        ("/v1/models/emotion/versions/99:predict", {"instances": [[0]]}, 404, ["99"]),
        ("/v1/models/emotion/versions/x:predict", {"instances": [[0]]}, 400, ["integer"]),
        ("/v1/models/emotion:predict", {"instances": [[[[0.0]] * 48] * 48, [[0.0]]]}, 400, ["rectangular"]),
        ("/v1/models/emotion:predict", {"instances": np.zeros((1, 64, 64, 1)).tolist()}, 400, ["[-1, 48, 48, 1]", "[1, 64, 64, 1]"]),
        ("/v1/models/emotion:predict", {"instances": [["a"]]}, 400, ["numbers"]),
        ("/v1/models/emotion:predict", {"instances": []}, 400, ["non-empty"]),
        ("/v1/models/emotion:predict", {"inputs": {"pixels": [0]}}, 400, ["pixels", "image"]),
        ("/v1/models/emotion:predict", {"instances": [], "inputs": []}, 400, ["exactly one"]),
        ("/v1/models/emotion:predict", {"signature_name": "other", "instances": [[0]]}, 400, ["other"]),
        ("/v1/models/emotion:predict", [1, 2], 400, ["JSON object"]),
        ("/v1/models/emotion:classify", {"examples": []}, 501, ["predict"]),
        ("/v1/models/emotion:predict", {"instances": np.zeros((257, 48, 48, 1)).tolist()}, 400, ["257", "256"]),
    ],
)
def test_bad_requests_get_tf_serving_errors(client, path, body, status, words):
    answer = client.post(path, json=body)
    assert answer.status_code == status
    message = answer.get_json()["error"]
    assert all(word in message for word in words), message


def test_malformed_json_is_refused(client):
    answer = client.post("/v1/models/emotion:predict", data=b"{not json", content_type="application/json")
    assert answer.status_code == 400 and "JSON" in answer.get_json()["error"]


def test_health_and_readiness(client):
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz").get_json()
    assert ready == {"ready": True, "models": ["age", "age_gender", "emotion", "gender"]}
