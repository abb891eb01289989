"""The GPU recipe end to end on the CPU with tiny networks and a synthetic pack, and the FER+ label rules it
and the reports rely on."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from emotion_detector.labels import EMOTIONS
from training.data import fer2013_splits, ferplus_majority
from training.export import export, load_trained
from training.gpu_recipe import collect, fold_contempt, main, save_pack
from training.metrics import expected_calibration_error, fit_temperature, softmax, uncertain_figures, uncertain_threshold
from training.tasks import AgeGenderTask

COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt", "unknown", "NF"]


def votes(**counts: int) -> np.ndarray:
    return np.array([counts.get(c, 0) for c in COLUMNS])


@pytest.mark.parametrize(
    ("row", "fer2013", "contempt", "expected"),
    [
        (votes(happiness=6, neutral=4), "sad", "drop", "happy"),  # plurality
        (votes(sadness=4, neutral=4, anger=2), "sad", "drop", "sad"),  # a tie goes to the FER2013 label
        (votes(sadness=4, neutral=4, anger=2), "angry", "drop", "sad"),  # ... else to the first in EMOTIONS order
        (votes(contempt=6, neutral=2, anger=2), "angry", "neutral", "neutral"),  # contempt counted as neutral
        (votes(contempt=6, neutral=2, anger=3), "angry", "drop", "angry"),  # contempt votes ignored
        (votes(unknown=5, happiness=5), "happy", "drop", None),  # junk ties the top emotion: excluded
        (votes(NF=10), "happy", "drop", None),
    ],
)
def test_ferplus_majority(row, fer2013, contempt, expected):
    label = ferplus_majority(row[None], COLUMNS, np.array([EMOTIONS.index(fer2013)]), contempt)[0]
    assert label == (-1 if expected is None else EMOTIONS.index(expected))


def test_fold_contempt_keeps_a_distribution():
    probabilities8 = torch.softmax(torch.randn(5, 8), dim=1)
    for policy in ("neutral", "drop"):
        folded = fold_contempt(probabilities8, policy)
        torch.testing.assert_close(folded.sum(dim=1), torch.ones(5))
    neutral = EMOTIONS.index("neutral")
    torch.testing.assert_close(fold_contempt(probabilities8, "neutral")[:, neutral], probabilities8[:, neutral] + probabilities8[:, 7])


def test_validation_is_carved_from_training_and_public_test_is_the_test_set():
    rng = np.random.default_rng(0)
    n = 200
    usage = np.r_[np.zeros(150, int), np.ones(50, int)]
    all_votes = rng.multinomial(10, [0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03], size=n)
    images = np.arange(n, dtype=np.uint8)[:, None, None].repeat(48, 1).repeat(48, 2)  # pixel value = row
    splits = fer2013_splits(images, rng.integers(0, 7, n), all_votes, COLUMNS, usage, ferplus_mix=1.0, val_from_training=0.2)
    rows = {name: set(s.images[:, 0, 0, 0].tolist()) for name, s in (("train", splits.train), ("val", splits.val), ("test", splits.test))}
    assert len(rows["val"]) == 30 and rows["test"] == set(range(150, 200))
    assert not rows["train"] & rows["val"] and not (rows["train"] | rows["val"]) & rows["test"]
    torch.testing.assert_close(splits.train.targets["emotion_soft"].sum(dim=1), torch.ones(len(splits.train)))


def test_temperature_scaling_finds_the_temperature_that_made_the_labels():
    rng = np.random.default_rng(1)
    logits = rng.normal(0, 3, (4000, 7))
    labels = np.array([rng.choice(7, p=p) for p in softmax(logits, 2.0)])  # labels drawn at temperature 2
    assert fit_temperature(logits, labels) == pytest.approx(2.0, rel=0.1)
    assert expected_calibration_error(softmax(logits, 2.0), labels) < 0.03 < expected_calibration_error(softmax(logits), labels)


def faces_with(confidence_and_correct: list[tuple[float, bool]]) -> tuple[np.ndarray, np.ndarray]:
    """Two-class probabilities whose top probability (class 0) is each given confidence, and labels that make
    the top label right or wrong as given."""
    confidence = np.array([c for c, _ in confidence_and_correct])
    labels = np.array([0 if right else 1 for _, right in confidence_and_correct])
    return np.stack([confidence, 1 - confidence], axis=1), labels


@pytest.mark.parametrize(
    ("faces", "expected"),
    [
        # below 0.70: 1 right of 2 (half: still uncertain); below 0.71: 2 of 3 right
        ([(0.55, False), (0.6, True), (0.7, True), (0.9, True)], 0.7),
        ([(0.55, True), (0.6, True), (0.9, True)], None),  # the least confident face is right: nothing to flag
        ([(0.55, False), (0.6, False), (0.9, False)], 1.0),  # always wrong: always uncertain
        # right at most half the time below 0.56-0.61 and again below 0.81-0.85: the largest t, not the first run's end
        ([(0.55, False), (0.6, True), (0.65, True), (0.8, False), (0.85, True), (0.9, True)], 0.85),
    ],
)
def test_uncertain_threshold_is_the_largest_below_which_faces_are_right_at_most_half_the_time(faces, expected):
    probabilities, labels = faces_with(faces)
    assert uncertain_threshold(probabilities, labels) == expected


def test_uncertain_figures_leave_out_unlabelled_faces():
    probabilities, labels = faces_with([(0.55, False), (0.6, True), (0.7, True), (0.9, True), (0.5, True)])
    labels[-1] = -1  # no FER+ majority
    assert uncertain_figures(probabilities, labels, 0.7) == {
        "threshold": 0.7,
        "n": 4,
        "n_uncertain": 2,
        "share_uncertain": 0.5,
        "accuracy_uncertain": 0.5,
        "accuracy_confident": 1.0,
    }


def synthetic_pack(path):
    rng = np.random.default_rng(0)
    n_fer, n_utk = 320, 160
    fer = {
        "images": rng.integers(0, 256, (n_fer, 48, 48), dtype=np.uint8),
        "labels": rng.integers(0, 7, n_fer),
        "usage": np.r_[np.zeros(n_fer - 64, int), np.ones(64, int)],
        "votes": rng.multinomial(10, [0.3, 0.2, 0.1, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.03], size=n_fer),
        "columns": COLUMNS,
    }
    utk = {
        "images": rng.integers(0, 256, (n_utk, 64, 64, 3), dtype=np.uint8),
        "age_years": rng.uniform(1, 90, n_utk),
        "gender": rng.integers(0, 2, n_utk),
        "is_val": np.arange(n_utk) >= n_utk - 32,
    }
    save_pack(path, fer, utk, AgeGenderTask(label_smoothing=0.0))


def test_the_recipe_trains_teachers_and_students_that_export_can_load(tmp_path):
    pack, out = tmp_path / "pack.npz", tmp_path / "out"
    synthetic_pack(pack)
    recipe = ["--device", "cpu", "--smoke", "--in-process", "--emotion-teachers", "1", "--age-gender-teachers", "1"]
    recipe += ["--emotion-students", "0.25:neutral", "0.25:drop", "--age-gender-distill-weights", "0.5"]
    main(["train", "--pack", str(pack), "--out", str(out), *recipe])

    summary = json.loads((out / "metrics.json").read_text())
    assert set(summary["runs"]) == {"emo-v4-teacher0", "ag-v4-teacher0", "emo-v4-m25n", "emo-v4-m25d", "ag-v4-d50"}
    assert "test" in summary["contempt_measurement"]
    assert load_trained(out / "emo-v4-m25d")[0].task_args["contempt"] == "drop"
    config, network, state = load_trained(out / "emo-v4-m25n")
    assert config.task_args["ferplus_mix"] == 0.75 and state["recipe"]["teachers"] == ["emo-v4-teacher0"]
    assert state["calibration"]["emotion_temperature"] > 0
    assert network(torch.zeros(2, 1, 48, 48))["emotion"].shape == (2, 7)
    config, network, state = load_trained(out / "ag-v4-d50")
    assert config.task == "age_gender" and "gender_temperature" in state["calibration"]

    collect(out, tmp_path / "back")
    assert sorted(p.parent.name for p in (tmp_path / "back").glob("*/last.pt")) == ["ag-v4-d50", "emo-v4-m25d", "emo-v4-m25n"]
    _, _, state = load_trained(tmp_path / "back" / "emo-v4-m25n", weights="raw")  # model = the EMA weights
    assert state["model_is_ema"] and (tmp_path / "back" / "logs.tar.gz").exists()


@pytest.mark.slow
def test_a_calibrated_checkpoint_exports_its_temperature_and_uncertain_threshold(shared_dir, tmp_path):
    pack, out = tmp_path / "pack.npz", tmp_path / "out"
    synthetic_pack(pack)
    recipe = ["--device", "cpu", "--smoke", "--in-process", "--tasks", "emotion", "--emotion-teachers", "1"]
    main(["train", "--pack", str(pack), "--out", str(out), *recipe, "--emotion-students", "0.15:neutral"])
    _, network, state = load_trained(out / "emo-v4-m15n")

    (directory,) = export(out / "emo-v4-m15n", version=4, models_dir=tmp_path / "models", flip_average=False)  # checks ONNX == torch
    info = json.loads((directory / "model.json").read_text())
    calibration = info["calibration"]
    temperature = state["calibration"]["emotion_temperature"]
    assert calibration["temperature"] == temperature and calibration["method"] == "temperature scaling"
    assert "Training" in calibration["fitted_on"] and calibration["validation"]["n"] > 0
    assert info["output"].get("uncertain_below") == calibration["uncertain_below"]  # where clients read it

    import onnxruntime as ort

    faces = torch.rand(4, 48, 48, 1) * 2 - 1
    served = ort.InferenceSession(str(directory / "model.onnx")).run(None, {"image": faces.numpy()})[0]
    with torch.no_grad():
        logits = network(faces.permute(0, 3, 1, 2))["emotion"].numpy()
    np.testing.assert_allclose(served, softmax(logits, temperature), atol=1e-5)
