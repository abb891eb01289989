"""Augmentation, the model registry, and one short real training run: train, resume, export, serve."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from serving.registry import ModelRegistry, discover
from training.augment import AugmentConfig, augment
from training.export import SPECS, ServingGraph, export, quantize_int8, to_onnx, write_models
from training.models import MODELS, build_model, count_macs
from training.train import main as train_main

IDENTITY = AugmentConfig(0.0, (1.0, 1.0), 0.0, 0.0, (1.0, 1.0), 0.0, 0.0)


def test_augment_keeps_shape_and_range_and_is_seeded():
    images = torch.rand(16, 3, 64, 64)
    first = augment(images, AugmentConfig(), torch.Generator().manual_seed(1))
    again = augment(images, AugmentConfig(), torch.Generator().manual_seed(1))
    other = augment(images, AugmentConfig(), torch.Generator().manual_seed(2))
    assert first.shape == images.shape
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_augment_with_nothing_enabled_is_the_identity():
    images = torch.rand(4, 1, 48, 48)
    np.testing.assert_allclose(augment(images, IDENTITY, torch.Generator().manual_seed(0)), images, atol=1e-5)


def test_augment_flip_mirrors_the_image():
    images = torch.rand(2, 1, 48, 48)
    flip_only = AugmentConfig(0.0, (1.0, 1.0), 0.0, 1.0, (1.0, 1.0), 0.0, 0.0)
    np.testing.assert_allclose(augment(images, flip_only, torch.Generator()), torch.flip(images, dims=[3]), atol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("channels", "size", "heads"), [(1, 48, {"emotion": 7}), (3, 64, {"age": 101, "gender": 2})])
def test_every_registered_model_builds_runs_and_counts(name, channels, size, heads):
    model = build_model(name, heads, in_channels=channels, input_size=size).eval()
    out = model(torch.rand(2, channels, size, size))
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, n) for k, n in heads.items()}
    assert count_macs(model, (channels, size, size)) > 1e6


def test_serving_graph_flip_average_is_the_mean_of_both_views():
    network = build_model("mini_vgg", {"emotion": 7}).eval()
    images = torch.rand(3, 48, 48, 1)
    with torch.no_grad():
        (averaged,) = ServingGraph(network, ("emotion",), flip_average=True)(images)
        plain = ServingGraph(network, ("emotion",), flip_average=False)
        expected = (plain(images)[0] + plain(torch.flip(images, dims=[2]))[0]) / 2
    np.testing.assert_allclose(averaged, expected, atol=1e-6)


def test_age_and_gender_export_as_separate_models_and_as_one_with_both_outputs(tmp_path):
    network = build_model("mini_vgg", {"age": 101, "gender": 2}, in_channels=3, input_size=64).eval()
    faces = torch.rand(64, 64, 64, 3, generator=torch.Generator().manual_seed(0)) * 2 - 1
    full = to_onnx(ServingGraph(network, ("age", "gender"), flip_average=False), faces[:16])
    full, precision = quantize_int8(full, faces[:32].numpy(), faces[32:].numpy())
    shared = {
        "version": 1,
        "input": {"name": "image", "shape": [-1, 64, 64, 3], "normalization": {"mean": 0.5, "std": 0.5}},
        "flip_average": False,
        "training": {"run": "t"},
    }
    write_models(full, SPECS["age_gender"], shared, precision, tmp_path)

    infos = {name: json.loads((tmp_path / name / "1" / "model.json").read_text()) for name in ("age", "gender", "age_gender")}
    assert infos["age"]["output"] == {"name": "years", "dtype": "float32", "shape": [-1], "unit": "years"}
    assert infos["gender"]["output"]["labels"] == ["female", "male"]
    assert infos["age_gender"]["outputs"] == {
        "age": {"dtype": "float32", "shape": [-1], "unit": "years"},
        "gender": {"dtype": "float32", "shape": [-1, 2], "labels": ["female", "male"]},
    }
    assert "output" not in infos["age_gender"]
    assert set(infos["age_gender"]["precision"]["agreement_with_float32_on_validation"]) == {"faces", "age", "gender"}
    assert "mean_abs_difference_years" in infos["age"]["precision"]["agreement_with_float32_on_validation"]

    registry = ModelRegistry(discover(tmp_path))
    registry.refresh()
    batch = {"image": faces[:8].numpy()}
    both = registry.resolve("age_gender").predict(batch)
    assert set(both) == {"age", "gender"} and both["age"].shape == (8,) and both["gender"].shape == (8, 2)
    np.testing.assert_array_equal(both["age"], registry.resolve("age").predict(batch)["years"])  # one quantised graph
    np.testing.assert_array_equal(both["gender"], registry.resolve("gender").predict(batch)["probabilities"])


@pytest.mark.slow
def test_train_resume_export_and_serve(shared_dir, tmp_path):
    overrides = [
        "epochs=1",
        "train_limit=256",
        "batch_size=64",
        "threads=1",
        f"runs_dir='{tmp_path}'",
        "run_name='smoke'",
        f"cache_dir='{tmp_path}'",
    ]
    train_main(["training/configs/emotion.toml", *[a for o in overrides for a in ("--set", o)]])
    run_dir = tmp_path / "smoke"
    assert torch.load(run_dir / "last.pt", weights_only=False)["epoch"] == 0

    train_main(["--resume", str(run_dir), "--set", "epochs=2"])  # continues, does not restart
    log = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["epochs"] == 2 and saved["train_limit"] == 256

    export(run_dir, version=3, models_dir=tmp_path / "models", flip_average=False)  # checks ONNX == torch
    registry = ModelRegistry(discover(tmp_path / "models"))
    registry.refresh()
    model = registry.resolve("emotion")
    assert model.version == 3
    probabilities = model.predict({"image": np.zeros((2, 48, 48, 1), np.float32)})["probabilities"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-5)
    assert model.info["training"]["epochs"] == 2

    export(run_dir, version=4, models_dir=tmp_path / "models", flip_average=False, int8=True)  # checks int8 ~ float32
    registry.refresh()
    quantized = registry.resolve("emotion")
    agreement = quantized.info["precision"]["agreement_with_float32_on_validation"]
    assert quantized.version == 4 and (agreement["same_top_label"] >= 0.95 or agreement["mean_total_variation"] <= 0.01)
    probabilities = quantized.predict({"image": np.zeros((2, 48, 48, 1), np.float32)})["probabilities"]
    np.testing.assert_allclose(probabilities.sum(axis=1), 1, atol=1e-3)
