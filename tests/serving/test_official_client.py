"""The model server driven over gRPC by the official TF Serving protos (an independent client in its own
process) and over REST, on real faces: same numbers both ways, TF Serving's error codes, still serving."""

from __future__ import annotations

import base64

import numpy as np
import pytest
import requests

pytestmark = pytest.mark.slow  # the official TF Serving client in its own process, against a model server process

MODELS = {"emotion": ("fer_faces", "probabilities", 7), "age": ("utk_faces", "years", None), "gender": ("utk_faces", "probabilities", 2)}


def decode(result: dict, output: str) -> np.ndarray:
    shape = result["shapes"][output]
    return np.frombuffer(base64.b64decode(result["outputs"][output]), dtype="<f4").reshape(shape)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("batch", [1, 8])
def test_grpc_and_rest_give_the_same_numbers(model, batch, model_server, official_client, request, tmp_path):
    fixture, output, classes = MODELS[model]
    faces = request.getfixturevalue(fixture)[:batch]
    np.save(tmp_path / "faces.npy", faces)
    grpc_results = official_client(
        model_server.grpc_target,
        [
            {"rpc": "predict", "model": model, "inputs": {"image": {"npy": str(tmp_path / "faces.npy"), "encoding": encoding}}}
            for encoding in ("tensor_content", "float_val")
        ],
    )
    assert [r["code"] for r in grpc_results] == ["OK", "OK"]
    via_content, via_values = (decode(r, output) for r in grpc_results)

    rows = requests.post(f"{model_server.rest_url}/v1/models/{model}:predict", json={"instances": faces.tolist()}, timeout=30)
    columns = requests.post(f"{model_server.rest_url}/v1/models/{model}:predict", json={"inputs": {"image": faces.tolist()}}, timeout=30)
    assert rows.status_code == 200 and columns.status_code == 200, (rows.text, columns.text)
    via_rows = np.asarray(rows.json()["predictions"], dtype=np.float32)
    via_columns = np.asarray(columns.json()["outputs"], dtype=np.float32)

    expected_shape = (batch, classes) if classes else (batch,)
    assert via_content.shape == expected_shape
    np.testing.assert_array_equal(via_content, via_values)
    np.testing.assert_array_equal(via_content, via_rows)  # float32 survives JSON exactly (shortest repr)
    np.testing.assert_array_equal(via_content, via_columns)
    if classes:
        np.testing.assert_allclose(via_content.sum(axis=1), 1.0, atol=1e-5)
    else:
        assert ((via_content > 0) & (via_content < 101)).all()


def test_faces_are_scored_independently_of_their_batch(model_server, official_client, fer_faces, tmp_path):
    np.save(tmp_path / "eight.npy", fer_faces)
    np.save(tmp_path / "third.npy", fer_faces[2:3])
    eight, third = official_client(
        model_server.grpc_target,
        [{"rpc": "predict", "model": "emotion", "inputs": {"image": {"npy": str(tmp_path / name)}}} for name in ("eight.npy", "third.npy")],
    )
    np.testing.assert_allclose(decode(eight, "probabilities")[2], decode(third, "probabilities")[0], atol=1e-5)


def test_metadata_over_grpc_tells_a_client_how_to_preprocess(model_server, official_client):
    emotion, age = official_client(model_server.grpc_target, [{"rpc": "metadata", "model": m} for m in ("emotion", "age")])
    assert emotion["signature"]["inputs"] == {"image": {"dtype": "DT_FLOAT", "shape": [-1, 48, 48, 1]}}
    assert emotion["signature"]["outputs"] == {"probabilities": {"dtype": "DT_FLOAT", "shape": [-1, 7]}}
    assert emotion["method_name"] == "tensorflow/serving/predict"
    assert emotion["info"]["output"]["labels"] == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert emotion["info"]["input"]["normalization"] == {"formula": "(pixel / 255 - mean) / std", "mean": 0.5, "std": 0.5}
    assert emotion["info"]["input"]["color"] == "grayscale"
    assert age["signature"]["inputs"]["image"]["shape"] == [-1, 64, 64, 3]
    assert age["info"]["output"]["unit"] == "years"


def test_errors_over_grpc_are_tf_serving_codes_and_the_server_keeps_serving(model_server, official_client, fer_faces, tmp_path):
    np.save(tmp_path / "ok.npy", fer_faces[:1])
    np.save(tmp_path / "wrong_shape.npy", np.zeros((1, 64, 64, 1), np.float32))
    np.save(tmp_path / "wrong_dtype.npy", np.zeros((1, 48, 48, 1), np.int32))
    ok = {"image": {"npy": str(tmp_path / "ok.npy")}}
    results = official_client(
        model_server.grpc_target,
        [
            {"rpc": "predict", "model": "no-such-model", "inputs": ok},
            {"rpc": "predict", "model": "emotion", "version": 999, "inputs": ok},
            {"rpc": "predict", "model": "emotion", "inputs": {"image": {"npy": str(tmp_path / "wrong_shape.npy")}}},
            {"rpc": "predict", "model": "emotion", "inputs": {"image": {"npy": str(tmp_path / "wrong_dtype.npy")}}},
            {"rpc": "predict", "model": "emotion", "inputs": {"pixels": {"npy": str(tmp_path / "ok.npy")}}},
            {"rpc": "predict", "model": "emotion", "inputs": ok},
        ],
    )
    codes = [r["code"] for r in results]
    assert codes == ["NOT_FOUND", "NOT_FOUND", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "INVALID_ARGUMENT", "OK"]
    assert "no-such-model" in results[0]["details"]
    assert "999" in results[1]["details"]
    assert "[-1, 48, 48, 1]" in results[2]["details"] and "[1, 64, 64, 1]" in results[2]["details"]
    assert "DT_FLOAT" in results[3]["details"] and "DT_INT32" in results[3]["details"]
    assert "pixels" in results[4]["details"] and "image" in results[4]["details"]
    assert model_server.process.poll() is None


def test_the_two_headed_model_answers_age_and_gender_in_one_request(model_server, official_client, utk_faces, tmp_path):
    """``age_gender``: one input, two named outputs (one forward pass of the shared trunk), the same numbers
    as the separate ``age`` and ``gender`` models, over gRPC and both REST formats."""
    np.save(tmp_path / "faces.npy", utk_faces)
    combined, age, gender = official_client(
        model_server.grpc_target,
        [
            {"rpc": "predict", "model": model, "inputs": {"image": {"npy": str(tmp_path / "faces.npy")}}}
            for model in ("age_gender", "age", "gender")
        ],
    )
    assert combined["code"] == "OK" and set(combined["outputs"]) == {"age", "gender"}
    np.testing.assert_allclose(decode(combined, "age"), decode(age, "years"), atol=0.05)
    np.testing.assert_allclose(decode(combined, "gender"), decode(gender, "probabilities"), atol=0.01)

    url = f"{model_server.rest_url}/v1/models/age_gender:predict"
    rows = requests.post(url, json={"instances": utk_faces.tolist()}, timeout=30).json()["predictions"]
    columns = requests.post(url, json={"inputs": {"image": utk_faces.tolist()}}, timeout=30).json()["outputs"]
    assert [set(row) for row in rows] == [{"age", "gender"}] * len(utk_faces)
    np.testing.assert_array_equal(np.asarray([row["age"] for row in rows], np.float32), decode(combined, "age"))
    np.testing.assert_array_equal(np.asarray(columns["gender"], np.float32), decode(combined, "gender"))
    metadata = requests.get(f"{url.removesuffix(':predict')}/metadata", timeout=10).json()
    assert set(metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]["outputs"]) == {"age", "gender"}
