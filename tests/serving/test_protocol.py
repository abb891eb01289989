"""The wire protocol is one module: the model server reads each model.json through serving.protocol, and a
client reading the served metadata (gRPC, REST) gets the same ModelSpec as one reading the file itself."""

from __future__ import annotations

import json
import shutil

import pytest

from emotion_detector.model_client import ModelServerClient
from serving.grpc_api import build_server
from serving.protocol.model_info import ModelSpec, read_model_json
from serving.registry import ModelRegistry, discover
from serving.rest_api import create_rest_app
from tests.conftest import SHIPPED_MODELS, free_port


def spec_from_file(name: str) -> ModelSpec:
    """The model's spec from its model.json, served from this machine's CPU (the server adds where it runs)."""
    version = max(int(path.name) for path in (SHIPPED_MODELS / name).iterdir() if path.name.isdigit())
    info = read_model_json(SHIPPED_MODELS / name / str(version), name, version)
    return ModelSpec.from_metadata(name, version, {**info, "execution_provider": "cpu"})


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    registry = ModelRegistry(discover(SHIPPED_MODELS))
    registry.refresh()
    return registry


def test_a_grpc_client_reads_the_served_metadata_as_the_file_says(registry):
    target = f"127.0.0.1:{free_port()}"
    server, _health = build_server(registry, target, max_workers=2)
    server.start()
    client = ModelServerClient(target, timeout_s=10)
    try:
        specs = client.specs()
    finally:
        client.close()
        server.stop(grace=None)
    assert specs == {name: spec_from_file(name) for name in specs}  # through protobuf's Struct: ints arrive as floats
    assert set(specs) == {"emotion", "age_gender"}


def test_the_rest_metadata_is_the_model_json_and_where_it_runs(registry):
    answer = create_rest_app(registry).test_client().get("/v1/models/emotion/metadata").get_json()
    version = int(answer["model_spec"]["version"])
    on_disk = read_model_json(SHIPPED_MODELS / "emotion" / str(version), "emotion", version)
    assert answer["metadata"]["emotion_detector"] == {**on_disk, "execution_provider": "cpu"}
    assert ModelSpec.from_metadata("emotion", version, answer["metadata"]["emotion_detector"]) == spec_from_file("emotion")


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda info: info.pop("input"), "KeyError: 'input'"),
        (lambda info: info["input"].update(shape=[-1, 48]), "IndexError"),
        (lambda info: info["input"]["normalization"].pop("std"), "KeyError: 'std'"),
    ],
)
def test_a_model_json_off_the_schema_fails_that_version_at_load_saying_why(tmp_path, change, reason):
    version = tmp_path / "emotion" / "1"
    shutil.copytree(SHIPPED_MODELS / "emotion" / "3", version)
    info = json.loads((version / "model.json").read_text())
    change(info)
    (version / "model.json").write_text(json.dumps(info))
    registry = ModelRegistry(discover(tmp_path))
    registry.refresh()
    (state,) = registry.status("emotion")
    assert state.model is None
    assert "does not follow the model.json schema" in state.error and reason in state.error, state.error
