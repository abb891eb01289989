"""MODEL_CARD.md for each shipped model, filled from its model.json and the evaluation that just ran."""

from __future__ import annotations

from pathlib import Path

DATA = {
    "emotion": (
        "FER2013 (ICML 2013 challenge; 48×48 grey faces from web image search), Training split (28,709 images) "
        "for training, PublicTest (3,589) for validation and this card. Targets blend the FER2013 label with the "
        "Microsoft FER+ re-annotation votes (10 annotators per image) when the training config says so; images "
        "whose FER+ majority vote is 'not a face' are left out of training."
    ),
    "age": (
        "UTKFace aligned & cropped faces (112×112, resized to the model input), ages 1–116, a seeded random split "
        "80 % train / 10 % validation / 10 % test (`split_seed` in training/tasks.py); the test split is never "
        "used in training. Trained jointly with the gender model (one network, two heads, exported separately)."
    ),
    "gender": (
        "UTKFace aligned & cropped faces, same seeded split as the age model; the binary labels are UTKFace's "
        "annotations of apparent gender."
    ),
}

LICENCES = {
    "emotion": "FER2013 is research-use data (ICML 2013 challenge); FER+ labels are MIT-licensed. The weights are "
    "this project's own; treat them as research-use because of the training data.",
    "age": "UTKFace is for **non-commercial research purposes only**; these weights inherit that restriction.",
    "gender": "UTKFace is for **non-commercial research purposes only**; these weights inherit that restriction.",
}

LIMITATIONS = {
    "emotion": [
        "It reads facial *expressions*, not inner feelings: a smile is not happiness, a neutral face is not calm.",
        "FER2013 labels are noisy (human agreement is about 65 %); disgust has only 436 training images and is recognised least well.",
        "Trained on frontal-ish, low-resolution web photos; strong head turns, occlusion and very dark or bright "
        "faces degrade it. Results over time (tracking + smoothing in the app) are more reliable than one frame.",
    ],
    "age": [
        "Estimates *apparent* age from appearance; error grows for the elderly and for children under ~3 "
        "(see the error-by-band table), and UTKFace's age mix is not that of any real audience.",
        "Near-duplicate photos of one person can fall on both sides of a random split, so the test MAE may be "
        "slightly optimistic for unseen people.",
    ],
    "gender": [
        "Predicts *apparent* binary gender as annotated in UTKFace; it cannot know anyone's gender identity and "
        "should not be used to make decisions about people.",
        "Accuracy is lower for young children, whose faces carry few gender cues.",
    ],
}


def write_model_card(directory: Path, name: str, metadata: dict, result: dict) -> None:
    ours, baseline = result["ours"], result.get("baseline")
    inputs = metadata["input"]
    if name == "age":
        headline = f"MAE **{ours['mae_years']} years** ({ours['within_5_years'] * 100:.1f} % within 5 years)"
        base = f"MAE {baseline['mae_years']} years" if baseline else "not measured"
    else:
        headline = f"accuracy **{ours['accuracy'] * 100:.2f} %**, macro-F1 {ours['macro_f1']}"
        base = f"accuracy {baseline['accuracy'] * 100:.2f} %" if baseline else "not measured"
    training = metadata["training"]
    lines = [
        f"# Model card: {name} v{metadata['version']}",
        "",
        "## What it does",
        f"Input: one face crop, {inputs['shape'][1]}×{inputs['shape'][2]} {inputs['color']}, NHWC float32, "
        f"normalised as `{inputs['normalization']['formula']}` with mean {inputs['normalization']['mean']}, "
        f"std {inputs['normalization']['std']}. Output `{metadata['output']['name']}`: "
        + (f"probabilities over {', '.join(metadata['output']['labels'])}." if "labels" in metadata["output"] else "expected age in years.")
        + (" Each face is also scored mirrored and the two averaged (in the graph)." if metadata.get("flip_average") else ""),
        "",
        "## Architecture and training",
        f"`{training['architecture']}` {training['model_args']} from `training/models.py`, trained from scratch by "
        f"`python -m training.train` (run `{training['run']}`, {training['epochs']} epochs, config saved in the "
        "checkpoint and in training/configs/), exported by `python -m training.export` "
        f"({training.get('weights', 'exponential moving average')} weights).",
        "",
        *_precision_lines(metadata.get("precision", {"weights": "float32"})),
        "## Data",
        DATA[name],
        "",
        "## Evaluation (held-out data)",
        f"On {result['split']} (n = {result['n']}): {headline}. Baseline on the same images: {base}"
        + (f" ({baseline['name']})." if baseline else "."),
        f"Full report: training/reports/{name}.md (per-class / per-age-band tables"
        + (", confusion matrix" if name == "emotion" else "")
        + "). Reproduce: `python -m training.evaluate --models "
        + name
        + "`.",
        "",
        "## Limitations",
        *[f"- {item}" for item in LIMITATIONS[name]],
        "",
        "## Licence",
        LICENCES[name],
        "",
    ]
    (directory / "MODEL_CARD.md").write_text("\n".join(lines))


def _precision_lines(precision: dict) -> list[str]:
    agreement = precision.get("agreement_with_float32_on_validation")
    if not agreement:
        return [f"Precision: {precision['weights']}.", ""]
    same = f"{agreement['same_top_label'] * 100:.1f} % same top label" if "same_top_label" in agreement else ""
    years = f"{agreement['mean_abs_difference_years']} years mean difference" if "mean_abs_difference_years" in agreement else ""
    return [
        f"Precision: {precision['weights']}, calibrated on {precision['calibrated_on_training_faces']} training faces; "
        f"against the float32 model on {agreement['faces']} validation faces: {same or years}. "
        "The figures below are for this quantised file.",
        "",
    ]
