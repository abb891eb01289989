"""MODEL_CARD.md for each shipped model, filled from its model.json and the evaluation that just ran."""

from __future__ import annotations

from pathlib import Path

from emotion_detector.labels import EMOTIONS
from training.metrics import ECE_BINS

DATA = {
    # a model.json without task_args: v3 (training/configs/emotion.toml)
    "emotion": (
        "FER2013 (ICML 2013 challenge; 48×48 grey faces from web image search), Training split (28,709 images) "
        "for training, PublicTest (3,589) for validation (it chose the epoch) and this card. Targets: the FER2013 "
        "label; images whose Microsoft FER+ re-annotation majority is 'not a face' are left out of training."
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

# Measured for v4 (training/reports/v4_training.md, "Contempt: folded, not an 8th label").
CONTEMPT_FOLDED = (
    "Contempt votes count as neutral; there is no 8th label. Contempt is the FER+ plurality of only 167 of 28,709 "
    "Training faces (0.6 %); the teacher ensemble, trained with contempt as an 8th output, predicted it for no face "
    "(0 of 24 on PublicTest); on contempt faces the second-most-voted emotion is neutral 101 times of 167. Folding "
    "into neutral and dropping the contempt votes measured the same on FER+ (PublicTest 83.5 vs 83.6 %), about 1 point "
    "apart on FER2013 labels in favour of dropping (training/reports/v4_training.md)."
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
    if name == "emotion":
        ferplus, fer2013 = ours["ferplus_majority"], ours["fer2013"]
        return (
            f"FER+ majority label **{ferplus['accuracy'] * 100:.2f} %** (n = {ferplus['n']}), FER2013 label "
            f"**{fer2013['accuracy'] * 100:.2f} %** (n = {fer2013['n']}), ECE {ferplus[f'ece_{ECE_BINS}_bins']} against the FER+ majority"
        )
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
    elif name == "emotion":
        base = headline(name, baseline).replace("**", "") if baseline else "not measured"
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
        + _trained_by(training)
        + f"exported by `python -m training.export` ({training.get('weights', 'exponential moving average')} weights).",
        "",
        *_precision_lines(metadata.get("precision", {"weights": "float32"})),
        "## Data",
        _emotion_data(training) if name == "emotion" else DATA[name],
        "",
        *(_calibration_lines(metadata, ours) if name == "emotion" else []),
        "## Evaluation (held-out data)",
        f"On {result['split']} (n = {result['n']}): {headline(name, ours)}. Baseline on the same images: {base}"
        + (f" ({baseline['name']})." if baseline else "."),
        *(_emotion_evaluation_lines(result) if name == "emotion" else []),
        f"Measured on {cpu['model_name']} (AVX-512 VNNI: {'yes' if cpu['avx512_vnni'] else 'no'}).",
        f"Full report: training/reports/{name}.md"
        + {"age_gender": "", "emotion": " (every version, both label sets, per class, time per face, confusion matrix)"}.get(
            name, " (per-class / per-age-band tables)"
        )
        + ". Reproduce: `python -m training.evaluate --models "
        + name
        + "`.",
        "",
        "## Limitations",
        *[f"- {item}" for item in (_emotion_limitations(training, result) if name == "emotion" else LIMITATIONS[name])],
        "",
        "## Licence",
        LICENCES[name],
        "",
    ]
    (directory / "MODEL_CARD.md").write_text("\n".join(lines))


def _outputs_line(metadata: dict) -> str:
    outputs = metadata.get("outputs") or {metadata["output"]["name"]: metadata["output"]}
    kind = "calibrated probabilities" if metadata.get("calibration") else "probabilities"
    described = [
        f"`{name}`: " + (f"{kind} over {', '.join(output['labels'])}" if "labels" in output else "expected age in years")
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


def _trained_by(training: dict) -> str:
    recipe = training.get("recipe")
    where = f"(run `{training['run']}`, {training['epochs']} epochs, config saved in the checkpoint and in training/configs/"
    if not recipe:
        return f"`python -m training.train` {where}), "
    teachers = recipe.get("teachers", [])
    distilled = (
        f"; distilled online (weight {recipe['distill_weight']}) from the mean of {len(teachers)} larger teacher networks "
        f"({', '.join(teachers)}) trained on the same data"
        if teachers
        else ""
    )
    return f"`python -m training.gpu_recipe` on one GPU {where}{distilled}), "


def _emotion_data(training: dict) -> str:
    task = training.get("task_args")
    if task is None:
        return DATA["emotion"]
    text = [
        "FER2013 (ICML 2013 challenge; 48×48 grey faces from web image search) with the Microsoft FER+ re-annotation "
        "(10 annotator votes per image over the 7 expressions, contempt, unknown and not-a-face)."
    ]
    if task.get("val_from_training"):
        text.append(
            f"Trained on FER2013 Training less a seeded validation split ({task['val_from_training'] * 100:.0f} % of Training, "
            f"seed {task['val_seed']}) that chose the run, the temperature and the uncertain threshold; PublicTest (3,589) "
            "was used for none of them, only for this card."
        )
    else:
        text.append("Training split for training, PublicTest (3,589) for validation (it chose the epoch) and this card.")
    mix = task.get("ferplus_mix", 0.0)
    if mix:
        text.append(f"Targets: {mix * 100:.0f} % the FER+ vote distribution over the 7 labels, {(1 - mix) * 100:.0f} % the FER2013 label.")
    if task.get("drop_junk_votes"):
        text.append("Training faces whose votes are at least half unknown / not-a-face are left out.")
    if task.get("drop_non_faces"):
        text.append("Training faces whose FER+ majority is not-a-face are left out.")
    if mix and task.get("contempt") == "neutral":
        text.append(CONTEMPT_FOLDED)
    return " ".join(text)


def _calibration_lines(metadata: dict, ours: dict) -> list[str]:
    ece = ours["ferplus_majority"][f"ece_{ECE_BINS}_bins"]
    calibration = metadata.get("calibration")
    if not calibration:
        return [
            "## Calibration",
            f"None: the probabilities are the network's softmax as trained (ECE {ece} on PublicTest against the FER+ "
            "majority), and the model has no uncertain threshold, so clients never show its faces as uncertain.",
            "",
        ]
    validation = calibration["validation"]
    lines = [
        "## Calibration and the uncertain state",
        f"The graph divides the logits by T = {calibration['temperature']} before the softmax ({calibration['method']}), so the "
        f"probabilities it returns are calibrated. T was fitted on the {calibration['fitted_on']}; on those validation faces "
        f"(n = {validation['n']}) ECE {validation[f'ece_{ECE_BINS}_bins_before']} → {validation[f'ece_{ECE_BINS}_bins']}; on "
        f"PublicTest {ece}.",
    ]
    if calibration["uncertain_below"] is not None:
        test = ours["uncertain"]
        lines.append(
            f"`uncertain_below` = **{calibration['uncertain_below']}** (model.json, in the output's description): {calibration['rule']}. "
            f"Validation: {_share_text(validation)}. PublicTest: {_share_text(test)}."
        )
    return [*lines, ""]


def _emotion_evaluation_lines(result: dict) -> list[str]:
    ours = result["ours"]
    recall = ", ".join(
        f"{label} {ours['ferplus_majority']['per_class'][label]['recall'] * 100:.1f} % / "
        f"{ours['fer2013']['per_class'][label]['recall'] * 100:.1f} %"
        for label in EMOTIONS
    )
    lines = [f"Recall per class (FER+ majority / FER2013 label): {recall}."]
    for reference, rows in (result.get("time_per_face_vs") or {}).items():
        ratios = ", ".join(f"{r['ratio']}× ({r['threads']} thread{'s' if r['threads'] > 1 else ''}, {r['batch']} per call)" for r in rows)
        lines.append(f"Time per face vs v{reference} (int8 files as shipped): {ratios}.")
    return lines


def _emotion_limitations(training: dict, result: dict) -> list[str]:
    ours = result["ours"]
    ferplus, fer2013 = ours["ferplus_majority"]["per_class"], ours["fer2013"]["per_class"]
    items = [LIMITATIONS["emotion"][0]]
    if training.get("task_args", {}).get("ferplus_mix", 0.0) >= 0.5:
        items.append(
            "Disgust and fear are recognised least well: recall against the FER+ majority "
            f"{ferplus['disgust']['recall'] * 100:.0f} % (n = {ferplus['disgust']['support']}) and {ferplus['fear']['recall'] * 100:.0f} % "
            f"(n = {ferplus['fear']['support']}), against the FER2013 label {fer2013['disgust']['recall'] * 100:.0f} % and "
            f"{fer2013['fear']['recall'] * 100:.0f} %; FER+ annotators give few faces a disgust or fear majority, so both are rare targets."
        )
        disagree = result["labels_disagree"]
        items.append(
            f"It scores lower on FER2013 labels ({ours['fer2013']['accuracy'] * 100:.1f} %) than on FER+ labels "
            f"({ours['ferplus_majority']['accuracy'] * 100:.1f} %) because it follows FER+, whose annotators relabel many FER2013 "
            f"faces as neutral: on PublicTest the FER+ majority is neutral for {disagree['fear']['ferplus_neutral'] * 100:.0f} % of "
            f"the FER2013 fear faces and {disagree['sad']['ferplus_neutral'] * 100:.0f} % of the sad ones."
        )
        items.append("There is no contempt label: contempt expressions are reported as neutral (see Data).")
        items.append(
            "The temperature and the uncertain threshold were fitted on FER2013 faces; on webcam or video faces (other light, "
            "pose, resolution) the confidence can be off, so 'uncertain' is a guide, not a guarantee."
        )
    else:
        items.append(
            f"{LIMITATIONS['emotion'][1]} Recall against the FER2013 label: disgust {fer2013['disgust']['recall'] * 100:.0f} %, "
            f"fear {fer2013['fear']['recall'] * 100:.0f} %."
        )
        items.append(
            "Trained on the FER2013 labels, it calls many faces that the FER+ annotators call neutral something else: neutral "
            f"recall against the FER+ majority {ferplus['neutral']['recall'] * 100:.0f} % (n = {ferplus['neutral']['support']})."
        )
    return [*items, LIMITATIONS["emotion"][2]]


def _share_text(figures: dict) -> str:
    return (
        f"{figures['share_uncertain'] * 100:.1f} % of faces below it, right {figures['accuracy_uncertain'] * 100:.1f} % of the "
        f"time; the rest right {figures['accuracy_confident'] * 100:.1f} %"
    )
