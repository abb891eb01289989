"""Model discovery, versions, policies, labels, hot reload and input validation, on tiny ONNX models."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from serving.protocol.errors import InvalidArgument, NotFound
from serving.registry import ModelConfig, ModelRegistry, ServingOptions, VersionPolicy, discover, parse_model_config_file


def write_scale_model(directory: Path, factor: float) -> None:
    """y = x * factor for x of shape (N, 2): distinguishable versions in a few hundred bytes."""
    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "k"], ["y"])],
        "scale",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        [helper.make_tensor("k", TensorProto.FLOAT, [], [factor])],
    )
    directory.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(directory / "model.onnx"))


@pytest.fixture
def models(tmp_path) -> Path:
    for version, factor in ((1, 1.0), (2, 2.0), (10, 10.0)):
        write_scale_model(tmp_path / "scale" / str(version), factor)
    write_scale_model(tmp_path / "other" / "3", 3.0)
    (tmp_path / "scale" / "notes").mkdir()  # not a version
    return tmp_path


def scaled(registry: ModelRegistry, **kwargs) -> float:
    model = registry.resolve("scale", **kwargs)
    return float(model.predict({"x": np.ones((1, 2), np.float32)})["y"][0, 0])


def test_highest_version_answers_by_default_and_others_by_number(models):
    registry = ModelRegistry(discover(models))
    registry.refresh()
    assert registry.names() == ["other", "scale"]
    assert scaled(registry) == 10.0  # numerically highest, not lexically ("10" > "2")
    assert scaled(registry, version=2) == 2.0
    with pytest.raises(NotFound, match=r"Specific\(scale, 7\)"):
        registry.resolve("scale", version=7)
    with pytest.raises(NotFound, match="nope"):
        registry.resolve("nope")


@pytest.mark.parametrize(
    ("policy", "loaded"),
    [
        (VersionPolicy("all"), [10, 2, 1]),
        (VersionPolicy("latest", num_versions=2), [10, 2]),
        (VersionPolicy("specific", versions=(1, 2)), [2, 1]),
    ],
)
def test_version_policies(models, policy, loaded):
    registry = ModelRegistry([ModelConfig("scale", models / "scale", policy)])
    registry.refresh()
    assert [s.version for s in registry.status("scale")] == loaded


def test_versions_added_and_removed_while_running_are_picked_up(models):
    registry = ModelRegistry(discover(models))
    registry.refresh()
    write_scale_model(models / "scale" / "11", 11.0)
    shutil.rmtree(models / "scale" / "1")
    registry.refresh()
    assert [s.version for s in registry.status("scale")] == [11, 10, 2]
    assert scaled(registry) == 11.0


def test_a_broken_version_is_reported_and_the_rest_keep_serving(models):
    (models / "scale" / "12").mkdir()
    (models / "scale" / "12" / "model.onnx").write_bytes(b"not an onnx file")
    registry = ModelRegistry(discover(models))
    registry.refresh()
    broken = registry.status("scale", 12)[0]
    assert broken.model is None and broken.error
    assert scaled(registry) == 10.0  # the highest *loaded* version
    assert registry.ready


def test_model_config_file_with_policy_and_labels(models, tmp_path):
    config = tmp_path / "models.config"
    config.write_text(
        """
        model_config_list {
          config {
            name: "scale"
            base_path: "%s"
            model_platform: "onnx"
            model_version_policy { specific { versions: 1 versions: 2 } }
            version_labels { key: "stable" value: 1 }
            version_labels { key: "canary" value: 2 }
          }
        }
        """
        % (models / "scale")
    )
    registry = ModelRegistry(parse_model_config_file(config))
    registry.refresh()
    assert registry.names() == ["scale"]
    assert scaled(registry, label="stable") == 1.0
    assert scaled(registry, label="canary") == 2.0
    with pytest.raises(InvalidArgument, match="beta"):
        registry.resolve("scale", label="beta")


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        ({"x": np.ones((1, 3), np.float32)}, r"must have shape \[-1, 2\].*got \[1, 3\]"),
        ({"x": np.ones((1, 2), np.float64)}, "must be DT_FLOAT, got DT_DOUBLE"),
        ({"x": np.array([[np.nan, 1]], np.float32)}, "NaN"),
        ({"z": np.ones((1, 2), np.float32)}, "alias not found.*z"),
        ({}, "missing input"),
        ({"x": np.ones((5, 2), np.float32)}, "batch of 5 exceeds the limit of 4"),
    ],
)
def test_bad_inputs_are_invalid_arguments(models, inputs, message):
    registry = ModelRegistry(discover(models), ServingOptions(max_batch_size=4))
    registry.refresh()
    with pytest.raises(InvalidArgument, match=message):
        registry.resolve("scale").predict(inputs)


def test_an_empty_batch_gives_empty_outputs(models):
    registry = ModelRegistry(discover(models))
    registry.refresh()
    out = registry.resolve("scale").predict({"x": np.zeros((0, 2), np.float32)})
    assert out["y"].shape == (0, 2)
