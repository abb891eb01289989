"""Evaluate the *shipped* ONNX models (serving/models/<name>/<version>/) on held-out data, beside the
third-party baselines on the same images, and write a report and model card per model.

    python -m training.evaluate                     # highest version of emotion, age, gender and age_gender
    python -m training.evaluate --models emotion --no-baselines

Held-out data: FER2013 PublicTest for emotion; for age and gender the seeded UTKFace test split
(training/data.py, ``split_seed``) that training never sees. Baselines (from $EMOTION_SHARED_DIR/models):
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
from training.data import UTK_GENDER_TO_OURS, default_data_dir, shared_dir, utkface_split_files
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


def latest(models_dir: Path, name: str) -> ShippedModel:
    versions = sorted(int(p.name) for p in (models_dir / name).iterdir() if p.name.isdigit())
    directory = models_dir / name / str(versions[-1])
    return ShippedModel(name, versions[-1], directory, json.loads((directory / "model.json").read_text()))


# ---- emotion ---------------------------------------------------------------------------------------------


def evaluate_emotion(model: ShippedModel, with_baseline: bool) -> dict:
    archive = np.load(default_data_dir() / "fer2013" / "fer2013.npz")
    public_test = archive["usage"] == 1
    faces, labels = archive["X"][public_test], archive["y"][public_test].astype(int)
    ours = model.predict(faces[..., None]).argmax(axis=1)
    result = {"split": "FER2013 PublicTest", "n": len(labels), "ours": _classification_metrics(labels, ours, EMOTIONS)}
    if with_baseline:
        baseline = _mini_xception_baseline(faces).argmax(axis=1)
        result["baseline"] = {"name": "mini-XCEPTION (fer_mini_xception/emotion_model.hdf5)"} | _classification_metrics(
            labels, baseline, EMOTIONS
        )
    return result


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


def _confusion_png(confusion: np.ndarray, labels: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = confusion / np.maximum(1, confusion.sum(axis=1, keepdims=True))
    figure, axes = plt.subplots(figsize=(6.4, 5.6))
    axes.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    axes.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    axes.set_yticks(range(len(labels)), labels)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true (FER2013 label)")
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
    axes.set_title("Emotion model on FER2013 PublicTest (row-normalised)")
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
        if name == "emotion":
            lines += ["", "![confusion matrix](emotion_confusion.png)"]
    if baseline:
        lines += ["", f"Baseline: {baseline['name']}, same images."]
    return "\n".join(lines) + "\n"


def model_sha256(model: ShippedModel) -> str:
    return hashlib.sha256((model.directory / "model.onnx").read_bytes()).hexdigest()


EVALUATORS = {"emotion": evaluate_emotion, "age": evaluate_age, "gender": evaluate_gender, "age_gender": evaluate_age_gender}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("serving/models"))
    parser.add_argument("--models", nargs="+", default=list(EVALUATORS), choices=list(EVALUATORS))
    parser.add_argument("--no-baselines", action="store_true")
    args = parser.parse_args(argv)
    REPORTS_DIR.mkdir(parents=True, exist_ok=True)
    for name in args.models:
        model = latest(args.models_dir, name)
        result = EVALUATORS[name](model, with_baseline=not args.no_baselines)
        result["model"] = {"version": model.version, "sha256": model_sha256(model)}  # which file these figures are about
        result["cpu"] = cpu_description()
        (REPORTS_DIR / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (REPORTS_DIR / f"{name}.md").write_text(render_report(name, model, result))
        if name == "emotion":
            _confusion_png(np.array(result["ours"]["confusion"]), EMOTIONS, REPORTS_DIR / "emotion_confusion.png")
        write_model_card(model.directory, name, model.metadata, result)
        flat = {**result["ours"].get("age", {}), **result["ours"].get("gender", {}), **result["ours"]}
        headline = {k: v for k, v in flat.items() if k in ("accuracy", "macro_f1", "mae_years", "within_5_years")}
        base = {k: v for k, v in result.get("baseline", {}).items() if k in headline}
        print(f"{name} v{model.version} on {result['split']} (n={result['n']}): ours {headline}  baseline {base}")


if __name__ == "__main__":
    main()
