"""Does turning tilted faces upright (crops.roll_degrees) help? Age and gender on the project's held-out UTKFace
test split (training/data.py's seeded split) and expression on FER2013 PublicTest under the FER+ majority rule,
each face on a larger canvas turned by 0, ±15 and ±30 degrees as a tilted head is, through the product's image
pipeline (CenterFace, crop rules, shipped models in process), with the crops aligned by the eye line (the
product) and upright as the box gives them (before).

    python -m bench.alignment [--faces 500] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from unittest import mock

import cv2
import numpy as np

from emotion_detector import pipeline
from emotion_detector.detection import DetectorOptions, create_detector
from emotion_detector.face_models import InProcessModels
from emotion_detector.labels import EMOTIONS, GENDERS
from emotion_detector.pipeline import FaceAnalyzer
from emotion_detector.settings import Settings
from training.data import UTK_GENDER_TO_OURS, default_data_dir, ferplus_majority, utkface_split_files
from training.evaluate import EVALUATION_CONTEMPT, _public_test
from training.tasks import AgeGenderTask

ANGLES_DEG = (0, 15, -15, 30, -30)


def test_faces(count: int) -> list[tuple[Path, float, int]]:
    root = default_data_dir() / "utkface"
    labels = {}
    for line in (root / "labels.csv").read_text().splitlines()[1:]:
        name, age, gender, _race = line.split(",")
        labels[name] = (float(age), UTK_GENDER_TO_OURS[int(gender)])
    task = AgeGenderTask(label_smoothing=0.0)  # the split is fixed by the training config's defaults, as in evaluate.py
    files = utkface_split_files(default_data_dir(), task.split_seed, task.val_fraction, task.test_fraction)["test"][:count]
    return [(root / "images" / name, *labels[name]) for name in files]


def expression_faces(count: int) -> list[tuple[np.ndarray, int]]:
    """PublicTest faces with a FER+ majority label (the microsoft/FERPlus rule), as BGR pictures."""
    faces, labels, votes, columns = _public_test()
    majority = ferplus_majority(votes, columns, labels, EVALUATION_CONTEMPT)
    kept = np.flatnonzero(majority >= 0)[:count]
    return [(cv2.cvtColor(faces[i], cv2.COLOR_GRAY2BGR), int(majority[i])) for i in kept]


def tilted(face_bgr: np.ndarray, angle_deg: float) -> bytes:
    """The face at 160 px in the middle of a 400 px picture (its edges repeated), turned by angle_deg."""
    face = cv2.resize(face_bgr, (160, 160), interpolation=cv2.INTER_LINEAR)
    canvas = cv2.copyMakeBorder(face, 120, 120, 120, 120, cv2.BORDER_REPLICATE)
    turn = cv2.getRotationMatrix2D((200.0, 200.0), angle_deg, 1.0)
    turned = cv2.warpAffine(canvas, turn, (400, 400), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return cv2.imencode(".png", turned)[1].tobytes()


def measure(analyzer: FaceAnalyzer, faces: list[tuple[Path, float, int]], angle_deg: float) -> dict:
    errors, correct, found = [], 0, 0
    for path, age, gender in faces:
        result = analyzer.analyze_image(tilted(cv2.imread(str(path)), angle_deg))
        if not result.faces:
            continue
        face = max(result.faces, key=lambda f: (f.box_xyxy[2] - f.box_xyxy[0]) * (f.box_xyxy[3] - f.box_xyxy[1]))
        found += 1
        errors.append(abs(face.age_years - age))
        correct += int(np.argmax(face.gender_probabilities) == gender)
    return {
        "angle_deg": angle_deg,
        "found": found,
        "gender_accuracy": round(correct / max(found, 1), 4),
        "age_mae_years": round(float(np.mean(errors)), 2) if errors else None,
    }


def measure_expression(analyzer: FaceAnalyzer, faces: list[tuple[np.ndarray, int]], angle_deg: float) -> dict:
    correct, found = 0, 0
    for face_bgr, label in faces:
        result = analyzer.analyze_image(tilted(face_bgr, angle_deg))
        if result.faces:
            face = max(result.faces, key=lambda f: (f.box_xyxy[2] - f.box_xyxy[0]) * (f.box_xyxy[3] - f.box_xyxy[1]))
            found += 1
            correct += int(np.argmax(face.emotion_probabilities) == label)
    return {"angle_deg": angle_deg, "found": found, "ferplus_accuracy": round(correct / max(found, 1), 4)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faces", type=int, default=500, help="faces of the UTKFace test split (2,142 in all)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    settings = Settings(model_server="inprocess", detector="centerface")
    analyzer = FaceAnalyzer(create_detector(DetectorOptions.from_settings(settings)), InProcessModels(), settings)
    faces, expressions = test_faces(args.faces), expression_faces(args.faces)
    rows = []
    for angle in ANGLES_DEG:
        aligned = measure(analyzer, faces, angle) | {"expression": measure_expression(analyzer, expressions, angle)}
        with mock.patch.object(pipeline, "roll_degrees", lambda _landmarks, count: np.zeros(count, np.float32)):
            upright = measure(analyzer, faces, angle) | {"expression": measure_expression(analyzer, expressions, angle)}
        rows.append({"aligned": aligned, "upright": upright})
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("model name")),
        platform.machine(),
    )
    print(f"UTKFace test split, {len(faces)} faces, genders {GENDERS}; {cpu}")
    print("| tilt | faces found | gender, aligned | gender, upright | age MAE, aligned | age MAE, upright |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        a, u = row["aligned"], row["upright"]
        print(
            f"| {a['angle_deg']:+d}° | {a['found']} | {a['gender_accuracy']:.1%} | {u['gender_accuracy']:.1%} |"
            f" {a['age_mae_years']} y | {u['age_mae_years']} y |"
        )
    print(f"\nFER2013 PublicTest, {len(expressions)} faces with a FER+ majority, {len(EMOTIONS)} expressions")
    print("| tilt | faces found | FER+ majority, aligned | FER+ majority, upright |")
    print("|---|---|---|---|")
    for row in rows:
        a, u = row["aligned"]["expression"], row["upright"]["expression"]
        print(f"| {a['angle_deg']:+d}° | {a['found']} | {a['ferplus_accuracy']:.1%} | {u['ferplus_accuracy']:.1%} |")
    if args.json:
        args.json.write_text(json.dumps({"faces": len(faces), "rows": rows}, indent=1) + "\n")


if __name__ == "__main__":
    main()
