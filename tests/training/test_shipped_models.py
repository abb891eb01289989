"""The committed models still give the figures their reports and model cards claim, on held-out data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, SHIPPED_MODELS
from training.evaluate import EVALUATORS, latest, model_sha256
from training.model_cards import headline

pytestmark = pytest.mark.slow

REPORTS = ROOT / "training" / "reports"
# Metrics as paths into the report's "ours"; the age_gender model has one entry per output.
HEADLINES = {
    "emotion": (3589, ["accuracy"]),
    "gender": (2142, ["accuracy"]),
    "age": (2142, ["mae_years", "within_5_years"]),
    "age_gender": (2142, ["age/mae_years", "age/within_5_years", "gender/accuracy"]),
}


def pick(metrics: dict, path: str) -> float:
    for key in path.split("/"):
        metrics = metrics[key]
    return metrics


# The int8 files give the same outputs on CPUs with and without AVX-512 VNNI (test_cpu_independence.py), so the
# figures must match to the rounding of the report on any x86-64 CPU.
@pytest.mark.parametrize("name", HEADLINES)
def test_the_shipped_model_reproduces_its_report(shared_dir, name):
    held_out, metrics = HEADLINES[name]
    report = json.loads((REPORTS / f"{name}.json").read_text())
    model = latest(SHIPPED_MODELS, name)
    assert report["model"] == {"version": model.version, "sha256": model_sha256(model)}, "the report is about another file"
    result = EVALUATORS[name](model, with_baseline=False)
    assert result["n"] == held_out == report["n"]
    for metric in metrics:
        assert pick(result["ours"], metric) == pytest.approx(pick(report["ours"], metric), abs=1e-4), metric


def test_the_one_pass_model_gives_what_the_age_and_gender_models_give():
    combined = json.loads((REPORTS / "age_gender.json").read_text())["ours"]
    assert combined["age"] == json.loads((REPORTS / "age.json").read_text())["ours"]
    assert combined["gender"] == json.loads((REPORTS / "gender.json").read_text())["ours"]


def test_the_model_cards_quote_the_reports():
    for name in HEADLINES:
        report = json.loads((REPORTS / f"{name}.json").read_text())
        card = (latest(SHIPPED_MODELS, name).directory / "MODEL_CARD.md").read_text()
        assert headline(name, report["ours"]) in card, name
        assert report["cpu"]["model_name"] in card, name
