"""Measure one detector's face-crop rule on each shipped model's training images and add it to the model.json of
every version, for a detector that came after the models were exported (export.py measures every detector of
its time). The rule depends on the dataset's framing and the detector's boxes, not on the network: every
version trained on the same data gets the same rule.

    python -m training.crop_rules --detector centerface          # serving/models/*/*/model.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from emotion_detector.detection import DETECTORS, DetectorOptions
from training.config import TrainConfig
from training.data import default_data_dir
from training.export import measure_face_crops
from training.tasks import build_task

# The data each served model was trained on, by the config that loads it (the same framing for every version).
TASK_CONFIGS = {"emotion": Path("training/configs/emotion.toml"), "age_gender": Path("training/configs/age_gender.toml")}
MODEL_TASKS = {"emotion": "emotion", "age": "age_gender", "gender": "age_gender", "age_gender": "age_gender"}


def add_rule(detector_name: str, models_dir: Path, cache_dir: Path) -> list[Path]:
    detector = DETECTORS[detector_name](DetectorOptions())
    rules = {}
    for task_name, config_path in TASK_CONFIGS.items():
        splits = build_task(TrainConfig.load(config_path)).load(default_data_dir(), cache_dir)
        rules[task_name] = measure_face_crops(splits.val, detectors=[detector])[detector.name]
    written = []
    for path in sorted(models_dir.glob("*/*/model.json")):
        task_name = MODEL_TASKS.get(path.parent.parent.name)
        if task_name is None:
            continue
        metadata = json.loads(path.read_text())
        metadata["input"]["face_crop"][detector.name] = rules[task_name]
        path.write_text(json.dumps(metadata, indent=2) + "\n")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--detector", required=True, choices=sorted(DETECTORS))
    parser.add_argument("--models-dir", type=Path, default=Path("serving/models"))
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"), help="decoded UTKFace images (as training uses)")
    args = parser.parse_args(argv)
    for path in add_rule(args.detector, args.models_dir, args.cache_dir):
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
