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
DATA["age_gender"] = (
    "The age and gender models in one graph (the same network, weights and quantisation: its outputs equal "
    "theirs), so one forward pass gives both. " + DATA["age"].split(" Trained jointly")[0]
)

LICENCES = {
    "emotion": "FER2013 is research-use data (ICML 2013 challenge); FER+ labels are MIT-licensed. The weights are "
    "this project's own; treat them as research-use because of the training data.",
    "age": "UTKFace is for **non-commercial research purposes only**; these weights inherit that restriction.",
    "gender": "UTKFace is for **non-commercial research purposes only**; these weights inherit that restriction.",
    "age_gender": "UTKFace is for **non-commercial research purposes only**; these weights inherit that restriction.",
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
LIMITATIONS["age_gender"] = LIMITATIONS["age"] + LIMITATIONS["gender"]


def headline(name: str, ours: dict) -> str:
    if name == "age_gender":
        return f"age {headline('age', ours['age'])}; gender {headline('gender', ours['gender'])}"
    if name == "age":
        return f"MAE **{ours['mae_years']} years** ({ours['within_5_years'] * 100:.1f} % within 5 years)"
    return f"accuracy **{ours['accuracy'] * 100:.2f} %**, macro-F1 {ours['macro_f1']}"


def write_model_card(directory: Path, name: str, metadata: dict, result: dict) -> None:
    ours, baseline = result["ours"], result.get("baseline")
    inputs = metadata["input"]
    if name == "age_gender":
        base = "in the age and gender cards"
    elif name == "age":
        base = f"MAE {baseline['mae_years']} years" if baseline else "not measured"
    else:
        base = f"accuracy {baseline['accuracy'] * 100:.2f} %" if baseline else "not measured"
    cpu = result["cpu"]
    training = metadata["training"]
    lines = [
        f"# Model card: {name} v{metadata['version']}",
        "",
        "## What it does",
        f"Input: one face crop, {inputs['shape'][1]}×{inputs['shape'][2]} {inputs['color']}, NHWC float32, "
        f"normalised as `{inputs['normalization']['formula']}` with mean {inputs['normalization']['mean']}, "
        f"std {inputs['normalization']['std']}. "
        + _outputs_line(metadata)
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
        f"On {result['split']} (n = {result['n']}): {headline(name, ours)}. Baseline on the same images: {base}"
        + (f" ({baseline['name']})." if baseline else "."),
        f"Measured on {cpu['model_name']} (AVX-512 VNNI: {'yes' if cpu['avx512_vnni'] else 'no'}).",
        f"Full report: training/reports/{name}.md"
        + ("" if name == "age_gender" else " (per-class / per-age-band tables" + (", confusion matrix)" if name == "emotion" else ")"))
        + ". Reproduce: `python -m training.evaluate --models "
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


def _outputs_line(metadata: dict) -> str:
    outputs = metadata.get("outputs") or {metadata["output"]["name"]: metadata["output"]}
    described = [
        f"`{name}`: " + (f"probabilities over {', '.join(output['labels'])}" if "labels" in output else "expected age in years")
        for name, output in outputs.items()
    ]
    return ("Output " if len(described) == 1 else "Outputs ") + "; ".join(described) + "."


def _precision_lines(precision: dict) -> list[str]:
    agreement = precision.get("agreement_with_float32_on_validation")
    if not agreement:
        return [f"Precision: {precision['weights']}.", ""]
    per_output = {k: v for k, v in agreement.items() if isinstance(v, dict)} or {"": agreement}
    measured = "; ".join(f"{f'{name} ' if name else ''}{_agreement_text(values)}" for name, values in per_output.items())
    reference = f", {precision['float32_reference']}," if "float32_reference" in precision else ""
    return [
        f"Precision: {precision['weights']}, calibrated on {precision['calibrated_on_training_faces']} training faces; "
        f"against the float32 model{reference} on {agreement['faces']} validation faces: {measured}. "
        "The figures below are for this quantised file.",
        "",
    ]


def _agreement_text(agreement: dict) -> str:
    if "same_top_label" in agreement:
        return f"{agreement['same_top_label'] * 100:.1f} % same top label"
    return f"{agreement['mean_abs_difference_years']} years mean difference"
