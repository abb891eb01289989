"""Re-make the shipped int8 models in the current int8 form (training/export.py, ``quantize_int8``) when their
training checkpoints are gone: the weights of the shipped QDQ files are dequantised to a float32 graph, which is
quantised again with the same calibration faces as ``training.export --int8``. Version, input rules and
training provenance are kept; the age and gender files are merged into one graph first, so ``age_gender``
(both outputs in one forward pass) is written too.

    python -m training.requantize --version 3          # serving/models/{emotion,age,gender,age_gender}/3/
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import onnx

from training.config import TrainConfig
from training.data import default_data_dir
from training.export import PRECISION_TEXT, SPECS, calibration_faces, quantize_int8, validation_faces, write_models
from training.onnx_graphs import dequantize, merge, rename_output
from training.tasks import build_task

CONFIGS = {"emotion": Path("training/configs/emotion.toml"), "age_gender": Path("training/configs/age_gender.toml")}


def requantize(models_dir: Path, version: int, task_name: str, cache_dir: Path) -> list[Path]:
    config = TrainConfig.load(CONFIGS[task_name])
    singles = [spec for spec in SPECS[task_name] if len(spec.outputs) == 1]
    metadata = [json.loads((models_dir / spec.name / str(version) / "model.json").read_text()) for spec in singles]
    if any(m["precision"]["weights"] == PRECISION_TEXT for m in metadata):
        raise ValueError(f"{task_name} v{version} is already in the current int8 form; nothing to do")
    runs = {m["training"]["run"] for m in metadata}
    if runs != {config.run_name}:  # calibration faces come from the config's data, so it must be the one trained
        raise ValueError(f"{CONFIGS[task_name]} is run {config.run_name!r}, but the shipped files come from {sorted(runs)}")
    # One float32 graph with an output per head, named after the head, as training.export makes it.
    full = None
    for spec in singles:
        quantized = onnx.load(str(models_dir / spec.name / str(version) / "model.onnx"))
        head_graph = rename_output(dequantize(quantized), spec.outputs[0].name, spec.outputs[0].head)
        full = head_graph if full is None else merge(full, head_graph)
    splits = build_task(config).load(default_data_dir(), cache_dir)
    quantized, precision = quantize_int8(full, calibration_faces(splits.train), validation_faces(splits.val))
    precision["float32_reference"] = f"dequantised from the earlier int8 v{version} file with 8-bit weights by training.requantize"
    shared = {key: metadata[0][key] for key in ("version", "input", "flip_average", "training")}
    return write_models(quantized, SPECS[task_name], shared, precision, models_dir)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--models-dir", type=Path, default=Path("serving/models"))
    parser.add_argument("--tasks", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument("--cache-dir", type=Path, default=Path(".cache"), help="decoded UTKFace images (as training uses)")
    args = parser.parse_args(argv)
    for task_name in args.tasks:
        requantize(args.models_dir, args.version, task_name, args.cache_dir)


if __name__ == "__main__":
    main()
