"""The committed models still give the figures their reports and model cards claim, on held-out data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, SHIPPED_MODELS
from training.evaluate import EVALUATORS, latest, model_sha256

pytestmark = pytest.mark.slow

REPORTS = ROOT / "training" / "reports"
HEADLINES = [("emotion", "accuracy", 3589), ("gender", "accuracy", 2142), ("age", "mae_years", 2142), ("age", "within_5_years", 2142)]


@pytest.mark.parametrize(("name", "metric", "held_out"), HEADLINES)
def test_the_shipped_model_reproduces_its_report(shared_dir, name, metric, held_out):
    report = json.loads((REPORTS / f"{name}.json").read_text())
    model = latest(SHIPPED_MODELS, name)
    assert report["model"] == {"version": model.version, "sha256": model_sha256(model)}, "the report is about another file"
    result = EVALUATORS[name](model, with_baseline=False)
    assert result["n"] == held_out == report["n"]
    assert result["ours"][metric] == pytest.approx(report["ours"][metric], abs=1e-4)


def test_the_model_cards_quote_the_reports():
    for name in ("emotion", "age", "gender"):
        report = json.loads((REPORTS / f"{name}.json").read_text())
        card = (latest(SHIPPED_MODELS, name).directory / "MODEL_CARD.md").read_text()
        ours = report["ours"]
        headline = f"MAE **{ours['mae_years']} years**" if name == "age" else f"accuracy **{ours['accuracy'] * 100:.2f} %**"
        assert headline in card, (name, headline)
