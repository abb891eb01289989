"""Held-out figures of trained networks: accuracy per class against both emotion label sets, calibration error,
temperature scaling, and age / gender errors by age band and gender. Pure functions of arrays, shared by the
GPU recipe (training/gpu_recipe.py) and the CPU evaluation of its checkpoints (training/evaluate_runs.py)."""

from __future__ import annotations

import numpy as np

from emotion_detector.labels import EMOTIONS, GENDERS
from training.data import ferplus_counts, ferplus_majority

AGE_BANDS_YEARS = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 70), (70, 200)]  # as training/evaluate.py
ECE_BINS = 15


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    scaled = logits / temperature
    scaled = scaled - scaled.max(axis=1, keepdims=True)
    exp = np.exp(scaled)
    return exp / exp.sum(axis=1, keepdims=True)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = ECE_BINS) -> float:
    """Top-label ECE: |accuracy − mean confidence| per equal-width confidence bin, weighted by the bin's share."""
    return _binned_calibration_error(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels, bins)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` (Guo et al., 2017), by a log-spaced
    search on [0.25, 8] refined around its best point: one scalar, so a search is exact enough and cannot diverge."""

    def nll(temperature: float) -> float:
        probabilities = softmax(logits.astype(np.float64), temperature)
        return float(-np.log(np.maximum(probabilities[np.arange(len(labels)), labels], 1e-12)).mean())

    grid = np.geomspace(0.25, 8.0, 61)
    best = grid[int(np.argmin([nll(t) for t in grid]))]
    fine = np.geomspace(best / 1.06, best * 1.06, 41)
    return round(float(fine[int(np.argmin([nll(t) for t in fine]))]), 4)


def classwise_calibration_error(probabilities: np.ndarray, labels: np.ndarray, index: int, bins: int = ECE_BINS) -> float:
    """One class's calibration error: |frequency of the class − mean predicted probability of it| per
    equal-width bin of that probability, over all rows (the per-class term of classwise ECE)."""
    return _binned_calibration_error(probabilities[:, index], labels == index, bins)


def _binned_calibration_error(probability: np.ndarray, happened: np.ndarray, bins: int) -> float:
    """|how often it happened − mean predicted probability| per equal-width probability bin, weighted by the bin's share."""
    which = np.clip(np.digitize(probability, np.linspace(0, 1, bins + 1)[1:-1], right=True), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        inside = which == b
        if inside.any():
            error += inside.mean() * abs(happened[inside].mean() - probability[inside].mean())
    return float(error)


def classification(probabilities: np.ndarray, labels: np.ndarray, names: tuple[str, ...]) -> dict:
    """Accuracy, top-label ECE and per class recall, precision and classwise calibration error, over the rows
    whose label is >= 0."""
    scored = labels >= 0
    probabilities, labels = probabilities[scored], labels[scored]
    if not len(labels):
        return {"n": 0, "accuracy": None, f"ece_{ECE_BINS}_bins": None, "per_class": {}}
    predicted = probabilities.argmax(axis=1)
    per_class = {}
    for index, name in enumerate(names):
        truth, chosen = labels == index, predicted == index
        per_class[name] = {
            "support": int(truth.sum()),
            "recall": round(float((predicted[truth] == index).mean()), 4) if truth.any() else None,
            "precision": round(float((labels[chosen] == index).mean()), 4) if chosen.any() else None,
            f"calibration_error_{ECE_BINS}_bins": round(classwise_calibration_error(probabilities, labels, index), 4),
        }
    return {
        "n": len(labels),
        "accuracy": round(float((predicted == labels).mean()), 4),
        f"ece_{ECE_BINS}_bins": round(expected_calibration_error(probabilities, labels), 4),
        "per_class": per_class,
    }


def emotion_report(probabilities: np.ndarray, fer2013_labels: np.ndarray, votes: np.ndarray, columns: list[str], contempt: str) -> dict:
    """Against the FER+ majority (data.ferplus_majority; excluded images left out) and the FER2013 label, plus the
    FER+ accuracy on the images with a clear majority (the top emotion has more than half of the 10 votes)."""
    ferplus_labels = ferplus_majority(votes, columns, fer2013_labels, contempt)
    clear = (ferplus_labels >= 0) & (ferplus_counts(votes, columns, contempt).max(axis=1) > 0.5 * votes.sum(axis=1))
    clear_labels = np.where(clear, ferplus_labels, -1)
    return {
        "ferplus_majority": classification(probabilities, ferplus_labels, EMOTIONS),
        "fer2013": classification(probabilities, fer2013_labels, EMOTIONS),
        "ferplus_clear_majority": {k: v for k, v in classification(probabilities, clear_labels, EMOTIONS).items() if k != "per_class"},
    }


def age_gender_report(predicted_years: np.ndarray, gender_probabilities: np.ndarray, ages: np.ndarray, genders: np.ndarray) -> dict:
    """MAE overall, by age band, by gender and by both; gender accuracy and ECE the same ways."""
    error = np.abs(predicted_years - ages)
    gender_ok = gender_probabilities.argmax(axis=1) == genders

    def cell(mask: np.ndarray) -> dict:
        if not mask.any():
            return {"n": 0}
        return {
            "n": int(mask.sum()),
            "mae_years": round(float(error[mask].mean()), 3),
            "bias_years": round(float((predicted_years - ages)[mask].mean()), 3),
            "gender_accuracy": round(float(gender_ok[mask].mean()), 4),
        }

    bands = {}
    for low, high in AGE_BANDS_YEARS:
        in_band = (ages >= low) & (ages < high)
        name = f"{low}-{high - 1}" if high < 200 else f"{low}+"
        bands[name] = {"all": cell(in_band), **{g: cell(in_band & (genders == i)) for i, g in enumerate(GENDERS)}}
    return {
        "n": len(ages),
        "mae_years": round(float(error.mean()), 3),
        "within_5_years": round(float((error <= 5).mean()), 4),
        "bias_years": round(float((predicted_years - ages).mean()), 3),
        "gender_accuracy": round(float(gender_ok.mean()), 4),
        f"gender_ece_{ECE_BINS}_bins": round(expected_calibration_error(gender_probabilities, genders), 4),
        "by_gender": {g: cell(genders == i) for i, g in enumerate(GENDERS)},
        "by_age_band": bands,
    }


def uncertain_threshold(probabilities: np.ndarray, labels: np.ndarray, step: float = 0.01, max_accuracy: float = 0.5) -> float | None:
    """The largest threshold t (a multiple of ``step``) such that the faces whose top probability is below t are
    right at most ``max_accuracy`` of the time, over the rows whose label is >= 0: what a client shows as
    uncertain is then more often wrong than right. None when no threshold flags any face under that rule."""
    scored = labels >= 0
    confidence = probabilities[scored].max(axis=1)
    correct = probabilities[scored].argmax(axis=1) == labels[scored]
    chosen = None
    for threshold in np.round(np.arange(1, round(1 / step) + 1) * step, 6):
        below = confidence < threshold
        if below.any() and correct[below].mean() <= max_accuracy:
            chosen = float(threshold)
    return chosen


def uncertain_figures(probabilities: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    """Share and accuracy of the faces below ``threshold`` (flagged uncertain), and the accuracy of the rest,
    over the rows whose label is >= 0."""
    scored = labels >= 0
    confidence = probabilities[scored].max(axis=1)
    correct = probabilities[scored].argmax(axis=1) == labels[scored]
    below = confidence < threshold

    def accuracy(mask: np.ndarray) -> float | None:
        return round(float(correct[mask].mean()), 4) if mask.any() else None

    return {
        "threshold": threshold,
        "n": int(scored.sum()),
        "n_uncertain": int(below.sum()),
        "share_uncertain": round(float(below.mean()), 4),
        "accuracy_uncertain": accuracy(below),
        "accuracy_confident": accuracy(~below),
    }
