"""Evaluate the *shipped* ONNX models (serving/models/<name>/<version>/) on held-out data, beside the
third-party baselines on the same images, and write a report and model card per model.

    python -m training.evaluate                     # every emotion version; the served age, gender and age_gender
    python -m training.evaluate --models emotion --no-baselines

Held-out data: FER2013 PublicTest for emotion (against the FER+ majority label and the FER2013 label, with
ECE, the faces each version's ``uncertain_below`` flags, and the newest version's time per face against each
earlier one's); for age and gender the seeded UTKFace test split (training/data.py, ``split_seed``) that
training never sees. Baselines (from $EMOTION_SHARED_DIR/models):
mini-XCEPTION (Keras, run on the torch backend, no TensorFlow) and the CC0 dlib age / gender ONNX models.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

from emotion_detector.labels import EMOTIONS, GENDERS
from training.data import UTK_GENDER_TO_OURS, default_data_dir, ferplus_majority, shared_dir, utkface_split_files
from training.metrics import ECE_BINS, emotion_report, uncertain_figures
from training.model_cards import write_model_card

REPORTS_DIR = Path(__file__).parent / "reports"
AGE_BANDS = [(0, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 70), (70, 200)]


@dataclass(frozen=True)
class ShippedModel:
    name: str
    version: int
    directory: Path
    metadata: dict

    def predict(self, pixels: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """pixels: uint8 (N, H, W, C) already at the model's input size. For a model with one output."""
        (output,) = self.predict_outputs(pixels, batch_size).values()
        return output

    def predict_outputs(self, pixels: np.ndarray, batch_size: int = 256) -> dict[str, np.ndarray]:
        session = ort.InferenceSession(str(self.directory / "model.onnx"), providers=["CPUExecutionProvider"])
        names = [output.name for output in session.get_outputs()]
        norm = self.metadata["input"]["normalization"]
        batches = []
        for start in range(0, len(pixels), batch_size):
            x = (pixels[start : start + batch_size].astype(np.float32) / 255 - norm["mean"]) / norm["std"]
            batches.append(session.run(names, {self.metadata["input"]["name"]: x}))
        return {name: np.concatenate([batch[i] for batch in batches]) for i, name in enumerate(names)}


def shipped_versions(models_dir: Path, name: str) -> list[ShippedModel]:
    """Every shipped version of a model, newest (the one served by default) first."""
    versions = sorted((int(p.name) for p in (models_dir / name).iterdir() if p.name.isdigit()), reverse=True)
    return [
        ShippedModel(
            name, version, models_dir / name / str(version), json.loads((models_dir / name / str(version) / "model.json").read_text())
        )
        for version in versions
    ]


def latest(models_dir: Path, name: str) -> ShippedModel:
    return shipped_versions(models_dir, name)[0]


# ---- emotion ---------------------------------------------------------------------------------------------

# Every version is scored against the same FER+ majority labels: contempt votes count as neutral, as v4 is
# trained (training/reports/v4_training.md), so contempt faces are not left out of any version's figures.
EVALUATION_CONTEMPT = "neutral"


def _public_test() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """FER2013 PublicTest: faces uint8 (N, 48, 48), FER2013 labels, FER+ votes (N, 10) and their column names."""
    archive = np.load(default_data_dir() / "fer2013" / "fer2013.npz")
    public_test = archive["usage"] == 1
    columns = [str(c) for c in archive["ferplus_columns"]]
    return archive["X"][public_test], archive["y"][public_test].astype(int), archive["ferplus_votes"][public_test], columns


def evaluate_emotion(model: ShippedModel, with_baseline: bool) -> dict:
    faces, labels, votes, columns = _public_test()
    uncertain_below = model.metadata["output"].get("uncertain_below")  # as the web client reads it
    ours = emotion_figures(model.predict(faces[..., None]), labels, votes, columns, uncertain_below)
    ferplus = ferplus_majority(votes, columns, labels, EVALUATION_CONTEMPT)
    result = {
        "split": "FER2013 PublicTest",
        "n": len(labels),
        "ferplus_excluded_junk_majority": int((ferplus < 0).sum()),
        "ours": ours,
        "labels_disagree": _label_sets_compared(labels, ferplus),
    }
    if with_baseline:
        baseline = emotion_figures(_mini_xception_baseline(faces), labels, votes, columns, None)
        result["baseline"] = {"name": "mini-XCEPTION (fer_mini_xception/emotion_model.hdf5)"} | baseline
    return result


def emotion_figures(
    probabilities: np.ndarray, labels: np.ndarray, votes: np.ndarray, columns: list[str], uncertain_below: float | None
) -> dict:
    """training.metrics.emotion_report (both label sets, ECE, per class), the faces a threshold flags as
    uncertain (against the FER+ majority; None without a threshold) and the FER+ confusion matrix."""
    figures = emotion_report(probabilities, labels, votes, columns, EVALUATION_CONTEMPT)
    ferplus = ferplus_majority(votes, columns, labels, EVALUATION_CONTEMPT)
    figures["uncertain"] = uncertain_figures(probabilities, ferplus, uncertain_below) if uncertain_below else None
    scored = ferplus >= 0
    confusion = np.zeros((len(EMOTIONS), len(EMOTIONS)), dtype=int)
    np.add.at(confusion, (ferplus[scored], probabilities[scored].argmax(axis=1)), 1)
    figures["ferplus_majority_confusion"] = confusion.tolist()
    return figures


def _label_sets_compared(fer2013: np.ndarray, ferplus: np.ndarray) -> dict:
    """Per FER2013 label: how often the FER+ majority of the same face agrees, and how often it says neutral."""
    scored = ferplus >= 0
    compared = {}
    for index, label in enumerate(EMOTIONS):
        faces = scored & (fer2013 == index)
        compared[label] = {
            "n": int(faces.sum()),
            "ferplus_same": round(float((ferplus[faces] == index).mean()), 4),
            "ferplus_neutral": round(float((ferplus[faces] == EMOTIONS.index("neutral")).mean()), 4),
        }
    return compared


def _mini_xception_baseline(faces: np.ndarray) -> np.ndarray:
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras  # training-only dependency; runs on the torch backend

    network = keras.models.load_model(shared_dir() / "models" / "fer_mini_xception" / "emotion_model.hdf5", compile=False)
    resized = np.stack([cv2.resize(face, (64, 64)) for face in faces]).astype(np.float32)
    return network.predict(((resized / 255 - 0.5) * 2)[..., None], batch_size=256, verbose=0)


# ---- age and gender --------------------------------------------------------------------------------------


def _utk_test_set(split_seed: int, val_fraction: float, test_fraction: float) -> tuple[list[Path], np.ndarray, np.ndarray]:
    root = default_data_dir() / "utkface"
    files = utkface_split_files(default_data_dir(), split_seed, val_fraction, test_fraction)["test"]
    labels = {}
    with open(root / "labels.csv") as handle:
        next(handle)
        for line in handle:
            name, age, gender, _race = line.rstrip("\n").split(",")
            labels[name] = (float(age), UTK_GENDER_TO_OURS[int(gender)])
    ages = np.array([labels[f][0] for f in files])
    genders = np.array([labels[f][1] for f in files])
    return [root / "images" / f for f in files], ages, genders


def _read_rgb(paths: list[Path], size: int) -> np.ndarray:
    return np.stack(
        [cv2.cvtColor(cv2.resize(cv2.imread(str(p)), (size, size), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for p in paths]
    )


def _split_args() -> tuple[int, float, float]:
    # The split is fixed by the training config's defaults (training/tasks.py AgeGenderTask).
    from training.tasks import AgeGenderTask

    task = AgeGenderTask(label_smoothing=0.0)
    return task.split_seed, task.val_fraction, task.test_fraction


def evaluate_age(model: ShippedModel, with_baseline: bool) -> dict:
    paths, ages, _ = _utk_test_set(*_split_args())
    size = model.metadata["input"]["shape"][1]
    ours = model.predict(_read_rgb(paths, size))
    result = {"split": "UTKFace seeded test split", "n": len(ages), "ours": _age_metrics(ages, ours)}
    if with_baseline:
        manifest = json.loads((shared_dir() / "models" / "age_gender_cc0" / "manifest.json").read_text())["models"]["age"]
        probabilities = _cc0_predict("age-v1.onnx", paths, manifest)
        baseline = probabilities @ np.array(manifest["age_weights"], dtype=np.float32)
        result["baseline"] = {"name": "dlib/Cydral age-v1 (CC0), expected age over its 81 bins"} | _age_metrics(ages, baseline)
    return result


def evaluate_gender(model: ShippedModel, with_baseline: bool) -> dict:
    paths, _, genders = _utk_test_set(*_split_args())
    size = model.metadata["input"]["shape"][1]
    ours = model.predict(_read_rgb(paths, size)).argmax(axis=1)
    result = {"split": "UTKFace seeded test split", "n": len(genders), "ours": _classification_metrics(genders, ours, GENDERS)}
    if with_baseline:
        manifest = json.loads((shared_dir() / "models" / "age_gender_cc0" / "manifest.json").read_text())["models"]["gender"]
        probabilities = _cc0_predict("gender-v1.onnx", paths, manifest)
        order = [manifest["labels"].index(g) for g in GENDERS]
        baseline = probabilities[:, order].argmax(axis=1)
        result["baseline"] = {"name": "dlib/Cydral gender-v1 (CC0)"} | _classification_metrics(genders, baseline, GENDERS)
    return result


def evaluate_age_gender(model: ShippedModel, with_baseline: bool) -> dict:
    """Both outputs of the one-pass model; the baselines are in the age and gender reports."""
    paths, ages, genders = _utk_test_set(*_split_args())
    outputs = model.predict_outputs(_read_rgb(paths, model.metadata["input"]["shape"][1]))
    ours = {
        "age": _age_metrics(ages, outputs["age"]),
        "gender": _classification_metrics(genders, outputs["gender"].argmax(axis=1), GENDERS),
    }
    return {"split": "UTKFace seeded test split", "n": len(ages), "ours": ours}


def _cc0_predict(filename: str, paths: list[Path], manifest: dict) -> np.ndarray:
    size = manifest["input"]["shape"][2]
    norm = manifest["input"]["normalization"]
    x = (_read_rgb(paths, size).astype(np.float32) - np.array(norm["means"], np.float32)) * norm["scale"]
    session = ort.InferenceSession(str(shared_dir() / "models" / "age_gender_cc0" / filename), providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {manifest["input"]["name"]: b.transpose(0, 3, 1, 2)})[0] for b in np.array_split(x, 16)])


# ---- metrics and report files ----------------------------------------------------------------------------


def _classification_metrics(truth: np.ndarray, predicted: np.ndarray, labels: tuple[str, ...]) -> dict:
    k = len(labels)
    confusion = np.zeros((k, k), dtype=int)
    np.add.at(confusion, (truth, predicted), 1)
    per_class = {}
    for i, label in enumerate(labels):
        tp = confusion[i, i]
        precision = tp / max(1, confusion[:, i].sum())
        recall = tp / max(1, confusion[i].sum())
        f1 = 2 * precision * recall / max(1e-9, precision + recall)
        per_class[label] = {
            "precision": round(float(precision), 4),
            "recall": round(float(recall), 4),
            "f1": round(float(f1), 4),
            "support": int(confusion[i].sum()),
        }
    return {
        "accuracy": round(float((truth == predicted).mean()), 4),
        "macro_f1": round(float(np.mean([c["f1"] for c in per_class.values()])), 4),
        "per_class": per_class,
        "confusion": confusion.tolist(),
    }


def _age_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    error = np.abs(predicted - truth)
    bands = {}
    for low, high in AGE_BANDS:
        mask = (truth >= low) & (truth < high)
        name = f"{low}-{high - 1}" if high < 200 else f"{low}+"
        bands[name] = {"n": int(mask.sum()), "mae_years": round(float(error[mask].mean()), 2) if mask.any() else None}
    return {
        "mae_years": round(float(error.mean()), 3),
        "within_5_years": round(float((error <= 5).mean()), 4),
        "bias_years": round(float((predicted - truth).mean()), 3),
        "by_age_band": bands,
    }


def _confusion_png(confusion: np.ndarray, labels: tuple[str, ...], path: Path, truth: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = confusion / np.maximum(1, confusion.sum(axis=1, keepdims=True))
    figure, axes = plt.subplots(figsize=(6.4, 5.6))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel(f"true ({truth})")
    for i in range(len(labels)):
        for j in range(len(labels)):
            axes.text(
                j,
                i,
                f"{rates[i, j]:.2f}\n({confusion[i, j]})",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if rates[i, j] > 0.5 else "black",
            )
    axes.set_title(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def cpu_description() -> dict:
    """The CPU the figures were measured on, and whether ONNX Runtime's int8 kernels had AVX-512 VNNI there."""
    model_name, flags = platform.processor() or platform.machine(), set()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model_name = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    return {"model_name": model_name, "avx512_vnni": "avx512_vnni" in flags}


def render_report(name: str, model: ShippedModel, result: dict) -> str:
    if name == "emotion":
        return render_emotion_report(result)
    ours, baseline = result["ours"], result.get("baseline")
    lines = [f"# {name} v{model.version} — evaluation on {result['split']} (n = {result['n']})", ""]
    lines.append("Generated by `python -m training.evaluate`; the numbers below are the exported ONNX model as served.")
    cpu = result["cpu"]
    lines.append(f"Measured on {cpu['model_name']} (AVX-512 VNNI: {'yes' if cpu['avx512_vnni'] else 'no'}).")
    lines.append("")
    if name == "age_gender":
        lines += ["Both outputs of one forward pass; the baselines are in age.md and gender.md.", ""]
        lines += ["| output | metric | ours |", "|---|---|---|"]
        lines += [f"| age | {key} | {ours['age'][key]} |" for key in ("mae_years", "within_5_years", "bias_years")]
        lines += [f"| gender | {key} | {ours['gender'][key]} |" for key in ("accuracy", "macro_f1")]
    elif name == "age":
        lines += ["| metric | ours | baseline |", "|---|---|---|"]
        for key in ("mae_years", "within_5_years", "bias_years"):
            lines.append(f"| {key} | {ours[key]} | {baseline[key] if baseline else '—'} |")
        lines += ["", "Error by age band (MAE, years):", "", "| band | n | ours | baseline |", "|---|---|---|---|"]
        for band, stats in ours["by_age_band"].items():
            other = baseline["by_age_band"][band]["mae_years"] if baseline else "—"
            lines.append(f"| {band} | {stats['n']} | {stats['mae_years']} | {other} |")
    else:
        lines += ["| metric | ours | baseline |", "|---|---|---|"]
        for key in ("accuracy", "macro_f1"):
            lines.append(f"| {key} | {ours[key]} | {baseline[key] if baseline else '—'} |")
        lines += [
            "",
            "Per class (ours; baseline recall beside):",
            "",
            "| class | precision | recall | F1 | support | baseline recall |",
            "|---|---|---|---|---|---|",
        ]
        for label, stats in ours["per_class"].items():
            other = baseline["per_class"][label]["recall"] if baseline else "—"
            lines.append(f"| {label} | {stats['precision']} | {stats['recall']} | {stats['f1']} | {stats['support']} | {other} |")
    if baseline:
        lines += ["", f"Baseline: {baseline['name']}, same images."]
    return "\n".join(lines) + "\n"


def model_sha256(model: ShippedModel) -> str:
    return hashlib.sha256((model.directory / "model.onnx").read_bytes()).hexdigest()


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f} %"


def render_emotion_report(report: dict) -> str:
    """Every shipped version (newest, the served one, first) and the baseline on both label sets."""
    rows = [(f"v{report['model']['version']} (served)", report["ours"])]
    rows += [(f"v{earlier['model']['version']}", earlier["ours"]) for earlier in report.get("earlier_versions", [])]
    baseline = report.get("baseline")
    ece = f"ece_{ECE_BINS}_bins"
    cpu = report["cpu"]
    ferplus_n = report["n"] - report["ferplus_excluded_junk_majority"]
    lines = [
        f"# emotion — every shipped version on {report['split']} (n = {report['n']})",
        "",
        "Generated by `python -m training.evaluate --models emotion`; the figures are the exported ONNX files as served.",
        f"Measured on {cpu['model_name']} (AVX-512 VNNI: {'yes' if cpu['avx512_vnni'] else 'no'}).",
        "",
        f"- **FER+ majority**: the emotion with the most of the 10 FER+ votes, contempt counted as neutral, ties broken by the "
        "FER2013 label when it is among the tied (training/data.py `ferplus_majority`); the "
        f"{report['ferplus_excluded_junk_majority']} faces whose majority is unknown / not-a-face are left out (n = {ferplus_n}).",
        f"- **FER2013 label**: the original label (n = {report['n']}).",
        f"- **ECE**: top label, {ECE_BINS} equal-width bins, against the FER+ majority, of the probabilities as served.",
        "- **Uncertain**: faces whose top probability is below the version's `uncertain_below` (model.json; chosen on "
        "validation faces, never on these); share of the FER+-scored faces, and the accuracy of those and of the rest.",
        "",
        "| model | FER+ majority | FER2013 label | ECE | uncertain below | uncertain share | accuracy uncertain | accuracy rest |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for title, ours in rows + ([(baseline["name"], baseline)] if baseline else []):
        uncertain = ours.get("uncertain")
        flagged = (
            f"{uncertain['threshold']} | {_pct(uncertain['share_uncertain'])} | {_pct(uncertain['accuracy_uncertain'])} "
            f"| {_pct(uncertain['accuracy_confident'])}"
            if uncertain
            else "none | — | — | —"
        )
        lines.append(
            f"| {title} | **{_pct(ours['ferplus_majority']['accuracy'])}** | {_pct(ours['fer2013']['accuracy'])} "
            f"| {ours['ferplus_majority'][ece]} | {flagged} |"
        )
    names = [title.split(" ")[0] for title, _ in rows] + (["baseline"] if baseline else [])
    columns = [ours for _, ours in rows] + ([baseline] if baseline else [])
    for labels, heading in (("ferplus_majority", "FER+ majority"), ("fer2013", "FER2013 label")):
        lines += [
            "",
            f"Per class against the {heading} (recall = accuracy on the faces of that class; calibration error: classwise, "
            f"{ECE_BINS} bins):",
            "",
            "| class | support | " + " | ".join(f"{n} recall | {n} precision | {n} calib. error" for n in names) + " |",
            "|---|---|" + "---|---|---|" * len(names),
        ]
        for label in EMOTIONS:
            cells = [ours[labels]["per_class"][label] for ours in columns]
            lines.append(
                f"| {label} | {cells[0]['support']} | "
                + " | ".join(f"{_pct(c['recall'])} | {_pct(c['precision'])} | {c[f'calibration_error_{ECE_BINS}_bins']}" for c in cells)
                + " |"
            )
    lines += [
        "",
        "The two label sets disagree on many faces: per FER2013 label, how often the FER+ majority of the same face agrees "
        "and how often it says neutral (which is why a model trained on the FER+ votes scores lower on FER2013 labels):",
        "",
        "| FER2013 label | n | FER+ majority agrees | FER+ majority neutral |",
        "|---|---|---|---|",
    ]
    for label, compared in report["labels_disagree"].items():
        lines.append(f"| {label} | {compared['n']} | {_pct(compared['ferplus_same'])} | {_pct(compared['ferplus_neutral'])} |")
    for reference, timing in report.get("time_per_face_vs", {}).items():
        lines += [
            "",
            f"Time per face, v{report['model']['version']} vs v{reference} (int8 files as shipped, ONNX Runtime on this CPU, "
            f"best of 3 interleaved rounds; `python -m training.cost --shipped serving/models/emotion/{report['model']['version']} "
            f"serving/models/emotion/{reference}`):",
            "",
            f"| threads | faces per call | v{report['model']['version']} ms/face | v{reference} ms/face | ratio |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r['threads']} | {r['batch']} | {r['candidate_ms_per_face']} | {r['reference_ms_per_face']} | {r['ratio']}× |"
            for r in timing
        ]
    lines += ["", f"![confusion matrix](emotion_confusion.png) (v{report['model']['version']}, against the FER+ majority)", ""]
    return "\n".join(lines)


EVALUATORS = {"emotion": evaluate_emotion, "age": evaluate_age, "gender": evaluate_gender, "age_gender": evaluate_age_gender}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("serving/models"))
    parser.add_argument("--models", nargs="+", default=list(EVALUATORS), choices=list(EVALUATORS))
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args(argv)
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    cpu = cpu_description()
    for name in args.models:
        # Every emotion version is reported (issue 14 compares them); the others report the served one.
        models = shipped_versions(args.models_dir, name) if name == "emotion" else [latest(args.models_dir, name)]
        results = []
        for model in models:
            result = EVALUATORS[name](model, with_baseline=not args.no_baselines and model is models[0])
            result["model"] = {"version": model.version, "sha256": model_sha256(model)}  # which file these figures are about
            result["cpu"] = cpu
            results.append(result)
            print(f"{name} v{model.version} on {result['split']} (n={result['n']}): {_headline_figures(result['ours'])}")
        report = results[0]
        if "baseline" in report:
            print(f"{name} baseline: {_headline_figures(report['baseline'])}")
        if len(results) > 1:
            from training.cost import compare_shipped  # builds on torch; only this step needs it

            report["earlier_versions"] = [{"model": r["model"], "ours": r["ours"]} for r in results[1:]]
            report["time_per_face_vs"] = {str(m.version): compare_shipped(models[0].directory, m.directory) for m in models[1:]}
            for reference, rows in report["time_per_face_vs"].items():
                ratios = ", ".join(f"{r['threads']} thread(s) batch {r['batch']}: {r['ratio']}x" for r in rows)
                print(f"{name} time per face v{models[0].version} vs v{reference} on {cpu['model_name']}: {ratios}")
        (REPORTS_DIR / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n")
        (REPORTS_DIR / f"{name}.md").write_text(render_report(name, models[0], report))
        if name == "emotion":
            confusion = np.array(report["ours"]["ferplus_majority_confusion"])
            title = f"Emotion v{models[0].version} on FER2013 PublicTest (row-normalised)"
            _confusion_png(confusion, EMOTIONS, REPORTS_DIR / "emotion_confusion.png", "FER+ majority label", title)
        for model, result in zip(models, results, strict=True):
            card = {**result, "baseline": report.get("baseline"), "time_per_face_vs": report.get("time_per_face_vs")}
            write_model_card(model.directory, name, model.metadata, card if model is models[0] else {**card, "time_per_face_vs": None})


def _headline_figures(ours: dict) -> dict:
    if "ferplus_majority" in ours:
        uncertain = ours.get("uncertain") or {}
        return {
            "ferplus_majority": ours["ferplus_majority"]["accuracy"],
            "fer2013": ours["fer2013"]["accuracy"],
            f"ece_{ECE_BINS}_bins": ours["ferplus_majority"][f"ece_{ECE_BINS}_bins"],
            **{k: uncertain[k] for k in ("threshold", "share_uncertain", "accuracy_uncertain", "accuracy_confident") if k in uncertain},
        }
    flat = {**ours.get("age", {}), **ours.get("gender", {}), **ours}
    return {k: v for k, v in flat.items() if k in ("accuracy", "macro_f1", "mae_years", "within_5_years")}


if __name__ == "__main__":
    main()
