"""The committed models still give the figures their reports and model cards claim, on held-out data."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ROOT, SHIPPED_MODELS
from training.evaluate import EVALUATORS, latest, model_sha256, shipped_versions
from training.model_cards import headline

pytestmark = pytest.mark.slow

REPORTS = ROOT / "training" / "reports"
# Metrics as paths into the report's "ours"; the age_gender model has one entry per output, emotion one per label set.
HEADLINES = {
    "emotion": (
        3589,
        [
            "ferplus_majority/n",
            "uncertain/threshold",
            "ferplus_majority/accuracy",
            "ferplus_majority/ece_15_bins",
            "fer2013/accuracy",
            "uncertain/share_uncertain",
            "uncertain/accuracy_uncertain",
            "uncertain/accuracy_confident",
        ],
    ),
    "gender": (2142, ["accuracy"]),
    "age": (2142, ["mae_years", "within_5_years"]),
    "age_gender": (2142, ["age/mae_years", "age/within_5_years", "gender/accuracy"]),
}
# Every shipped emotion version is in its report (the served one first); the other reports are about the served one.
CASES = [("emotion", model.version) for model in shipped_versions(SHIPPED_MODELS, "emotion")]
CASES += [(name, latest(SHIPPED_MODELS, name).version) for name in HEADLINES if name != "emotion"]


def pick(metrics: dict, path: str) -> float | None:
    for key in path.split("/"):
        if metrics is None:
            return None  # e.g. "uncertain" of a version without a threshold
        metrics = metrics[key]
    return metrics


def version_report(report: dict, version: int) -> dict:
    """The report's figures for one version: the served one at the top level, earlier ones in earlier_versions."""
    entries = [{"model": report["model"], "ours": report["ours"]}, *report.get("earlier_versions", [])]
    (entry,) = [e for e in entries if e["model"]["version"] == version]
    return entry


def test_the_emotion_report_covers_every_shipped_version_and_serves_the_newest():
    report = json.loads((REPORTS / "emotion.json").read_text())
    versions = [model.version for model in shipped_versions(SHIPPED_MODELS, "emotion")]
    assert [report["model"]["version"], *(e["model"]["version"] for e in report.get("earlier_versions", []))] == versions
    assert report["ours"]["uncertain"] is not None, "the served emotion model has no uncertain threshold"


# The int8 files give the same outputs on CPUs with and without AVX-512 VNNI (test_cpu_independence.py), so the
# figures must match to the rounding of the report on any x86-64 CPU.
@pytest.mark.parametrize(("name", "version"), CASES)
def test_the_shipped_model_reproduces_its_report(shared_dir, name, version):
    held_out, metrics = HEADLINES[name]
    report = json.loads((REPORTS / f"{name}.json").read_text())
    (model,) = [m for m in shipped_versions(SHIPPED_MODELS, name) if m.version == version]
    expected = version_report(report, version)
    assert expected["model"] == {"version": model.version, "sha256": model_sha256(model)}, "the report is about another file"
    result = EVALUATORS[name](model, with_baseline=False)
    assert result["n"] == held_out == report["n"]
    for metric in metrics:
        measured, reported = pick(result["ours"], metric), pick(expected["ours"], metric)
        assert (measured is None) == (reported is None), metric
        if reported is not None:
            assert measured == pytest.approx(reported, abs=1e-4), metric


def test_the_one_pass_model_gives_what_the_age_and_gender_models_give():
    combined = json.loads((REPORTS / "age_gender.json").read_text())["ours"]
    assert combined["age"] == json.loads((REPORTS / "age.json").read_text())["ours"]
    assert combined["gender"] == json.loads((REPORTS / "gender.json").read_text())["ours"]


@pytest.mark.parametrize(("name", "version"), CASES)
def test_the_model_cards_quote_the_reports(name, version):
    report = json.loads((REPORTS / f"{name}.json").read_text())
    card = (SHIPPED_MODELS / name / str(version) / "MODEL_CARD.md").read_text()
    assert headline(name, version_report(report, version)["ours"]) in card
    assert report["cpu"]["model_name"] in card
