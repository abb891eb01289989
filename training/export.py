"""Export a trained checkpoint (its EMA weights) to the model server's layout:

    serving/models/<name>/<version>/model.onnx   NHWC float32 input, softmax / expected age in the graph
    serving/models/<name>/<version>/model.json   preprocessing, labels, provenance (read by the server)

    python -m training.export runs/emo-v1 --version 1               # -> emotion
    python -m training.export runs/ag-v1 --version 1            # -> age and gender
    python -m training.export runs/emo-v1 --version 1 --int8        # int8, calibrated on training faces

The ONNX output is checked against PyTorch on real validation images before anything is written; an int8
model is checked against its float32 original the same way (agreement is recorded in model.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from emotion_detector.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector
from emotion_detector.detection import DetectorOptions, FaceDetector, HaarDetector, YuNetDetector
from emotion_detector.labels import EMOTIONS, GENDERS
from training.config import TrainConfig
from training.crop_calibration import calibrate
from training.data import FaceSet, default_data_dir, shared_dir
from training.train import PIXEL_MEAN, PIXEL_STD, build, normalise

OPSET = 17


@dataclass(frozen=True)
class ExportSpec:
    name: str
    head: str
    output_name: str
    labels: tuple[str, ...] | None  # None for a regression output


class ServingGraph(nn.Module):
    """NHWC normalised images in (TF Serving's convention), one post-processed head out. With
    ``flip_average`` the mirrored face is scored too and the probabilities averaged."""

    def __init__(self, network: nn.Module, head: str, flip_average: bool):
        super().__init__()
        self.network, self.head, self.flip_average = network, head, flip_average

    def forward(self, images_nhwc: torch.Tensor) -> torch.Tensor:
        x = images_nhwc.permute(0, 3, 1, 2)
        if self.flip_average:
            n = x.shape[0]
            probabilities = F.softmax(self.network(torch.cat([x, torch.flip(x, dims=[3])]))[self.head], dim=1)
            probabilities = (probabilities[:n] + probabilities[n:]) / 2
        else:
            probabilities = F.softmax(self.network(x)[self.head], dim=1)
        if self.head == "age":
            return probabilities @ torch.arange(probabilities.shape[1], dtype=torch.float32)  # expected years
        return probabilities


SPECS = {
    "emotion": [ExportSpec("emotion", "emotion", "probabilities", EMOTIONS)],
    "age_gender": [
        ExportSpec("age", "age", "years", None),
        ExportSpec("gender", "gender", "probabilities", GENDERS),
    ],
}


def load_trained(run_dir: Path, weights: str = "ema") -> tuple[TrainConfig, nn.Module, dict]:
    """The checkpoint's network with its EMA weights (default) or its last raw weights."""
    state = torch.load(run_dir / "last.pt", weights_only=False)
    config = TrainConfig.from_dict(state["config"])
    _task, network = build(config)
    if weights == "ema":
        network.load_state_dict({k.removeprefix("module."): v for k, v in state["ema"].items() if k.startswith("module.")})
    else:
        network.load_state_dict(state["model"])
    network.eval()
    return config, network, state


def export(run_dir: Path, version: int, models_dir: Path, flip_average: bool, int8: bool = False, weights: str = "ema") -> list[Path]:
    config, network, state = load_trained(run_dir, weights)
    task, _ = build(config)
    splits = task.load(Path(config.data_dir) if config.data_dir else default_data_dir(), Path(config.cache_dir))
    sample = normalise(splits.val.images[:64]).permute(0, 2, 3, 1).contiguous()
    face_crop = measure_face_crops(splits.val)
    if int8:  # the same faces for every head's model: NHWC, normalised as served
        chosen = torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[:512]
        calibration = normalise(splits.train.images[chosen]).permute(0, 2, 3, 1).contiguous().numpy()
        validation = normalise(splits.val.images[:1024]).permute(0, 2, 3, 1).contiguous().numpy()
    written = []
    for spec in SPECS[config.task]:
        graph = ServingGraph(network, spec.head, flip_average).eval()
        target = models_dir / spec.name / str(version)
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            onnx_path = Path(tmp) / "model.onnx"
            torch.onnx.export(
                graph,
                (sample[:1],),
                str(onnx_path),
                input_names=["image"],
                output_names=[spec.output_name],
                dynamic_axes={"image": {0: "batch"}, spec.output_name: {0: "batch"}},
                opset_version=OPSET,
                dynamo=False,
            )
            model_proto = onnx.load(str(onnx_path))
        model_proto.doc_string = f"Emotion Detector {spec.name} v{version} (trained by training/, run {config.run_name})"
        onnx.checker.check_model(model_proto)
        _check_against_torch(model_proto, graph, sample)
        metadata = _metadata(spec, config, task, version, flip_average, state, face_crop)
        metadata["training"]["weights"] = "exponential moving average" if weights == "ema" else "last step"
        if int8:
            model_proto, metadata["precision"] = quantize_int8(model_proto, calibration, validation)
        onnx.save(model_proto, str(target / "model.onnx"))
        (target / "model.json").write_text(json.dumps(metadata, indent=2) + "\n")
        written.append(target)
        print(f"wrote {target}/model.onnx ({(target / 'model.onnx').stat().st_size / 1e6:.2f} MB)")
    return written


def quantize_int8(model_proto: onnx.ModelProto, calibration: np.ndarray, validation: np.ndarray) -> tuple[onnx.ModelProto, dict]:
    """Static int8 quantisation of the convolutions (QDQ, per-channel weights, activation ranges from real
    training faces): about 1.8x faster on this CPU. Refuses a result that strays from the float32 model on validation faces."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Faces(CalibrationDataReader):
        def __init__(self):
            self.batches = iter(calibration[i : i + 64] for i in range(0, len(calibration), 64))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"image": batch}

    with tempfile.TemporaryDirectory() as tmp:
        fp32, prepared, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx", Path(tmp) / "int8.onnx"
        onnx.save(model_proto, str(fp32))
        quant_pre_process(str(fp32), str(prepared))
        quantize_static(
            str(prepared),
            str(int8),
            Faces(),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],  # the bulk of the work; the small dense head and softmax stay float32
        )
        quantized = onnx.load(str(int8))
    outputs = [
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"image": validation})[0]
        for m in (model_proto, quantized)
    ]
    if outputs[0].ndim == 1:
        agreement = {"mean_abs_difference_years": round(float(np.abs(outputs[0] - outputs[1]).mean()), 3)}
        acceptable = agreement["mean_abs_difference_years"] <= 1.0
    else:
        agreement = {
            "same_top_label": round(float((outputs[0].argmax(1) == outputs[1].argmax(1)).mean()), 4),
            "mean_total_variation": round(float(np.abs(outputs[0] - outputs[1]).sum(axis=1).mean() / 2), 4),
        }
        # Near-uniform outputs (an untrained model) may swap their top label on noise; their distance stays tiny.
        acceptable = agreement["same_top_label"] >= 0.95 or agreement["mean_total_variation"] <= 0.01
    print(f"int8 vs float32 on {len(validation)} validation faces: {agreement}")
    if not acceptable:
        raise RuntimeError(f"the int8 model strays too far from float32: {agreement}")
    precision = {
        "weights": "convolutions int8 per channel with uint8 activations (ONNX QDQ, static); dense head float32",
        "calibrated_on_training_faces": len(calibration),
        "agreement_with_float32_on_validation": {"faces": len(validation), **agreement},
    }
    return quantized, precision


def _check_against_torch(model_proto: onnx.ModelProto, graph: nn.Module, sample: torch.Tensor) -> None:
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"image": sample.numpy()})
    with torch.no_grad():
        torch_out = graph(sample).numpy()
    worst = float(np.abs(onnx_out - torch_out).max())
    tolerance = 1e-3 if torch_out.ndim == 1 else 1e-4  # years vs probabilities
    if worst > tolerance:
        raise RuntimeError(f"ONNX output differs from PyTorch by {worst:.2e} (tolerance {tolerance:.0e})")


def measure_face_crops(faces: FaceSet, count: int = 400) -> dict:
    """How each detector's boxes sit on this dataset's images (see training/crop_calibration.py)."""
    step = max(1, len(faces) // count)
    images = faces.images[::step].permute(0, 2, 3, 1).numpy()
    images_bgr = [cv2.cvtColor(i, cv2.COLOR_GRAY2BGR) if i.shape[2] == 1 else cv2.cvtColor(i, cv2.COLOR_RGB2BGR) for i in images]
    options = DetectorOptions(min_face_side_px=40, max_input_side=320)
    # BlazeFace's two variants draw different boxes (full range: larger, centred lower), so each has a rule.
    detectors: list[FaceDetector] = [HaarDetector(options), BlazeFaceDetector(options, SHORT_RANGE), BlazeFaceDetector(options, FULL_RANGE)]
    yunet = shared_dir() / "models" / "yunet" / "face_detection_yunet.onnx"
    if yunet.is_file():
        detectors.append(YuNetDetector(yunet, options))
    rules = {}
    for detector in detectors:
        rule, measured = calibrate(images_bgr, detector)
        rules[detector.name] = {**dataclasses.asdict(rule), "measured_on_images": measured}
        print(f"face crop for {detector.name}: {rule} ({measured} of {len(images_bgr)} images)")
    return rules


def _metadata(spec: ExportSpec, config: TrainConfig, task, version: int, flip_average: bool, state: dict, face_crop: dict) -> dict:
    channels = task.in_channels
    output = {"name": spec.output_name, "dtype": "float32"}
    if spec.labels:
        output |= {"shape": [-1, len(spec.labels)], "labels": list(spec.labels)}
    else:
        output |= {"shape": [-1], "unit": "years"}
    return {
        "name": spec.name,
        "version": version,
        "input": {
            "name": "image",
            "dtype": "float32",
            "shape": [-1, task.input_size, task.input_size, channels],
            "layout": "NHWC",
            "color": "grayscale" if channels == 1 else "RGB",
            "normalization": {"formula": "(pixel / 255 - mean) / std", "mean": PIXEL_MEAN, "std": PIXEL_STD},
            # square crop per detector: side = k * box width, centre shifted from the box centre
            "face_crop": face_crop,
        },
        "output": output,
        "flip_average": flip_average,
        "precision": {"weights": "float32"},
        "training": {
            "run": config.run_name,
            "architecture": config.model,
            "model_args": config.model_args,
            "epochs": state["epoch"] + 1,
            "final_validation": state["metrics"],
        },
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--version", type=int, required=True)
    parser.add_argument("--models-dir", type=Path, default=Path("serving/models"))
    parser.add_argument("--flip-average", action="store_true", help="score each face and its mirror image")
    parser.add_argument("--int8", action="store_true", help="quantise to int8 (static, calibrated on training faces)")
    parser.add_argument("--weights", choices=["ema", "raw"], default="ema", help="the EMA weights or the last step's")
    args = parser.parse_args(argv)
    export(args.run_dir, args.version, args.models_dir, args.flip_average, args.int8, args.weights)


if __name__ == "__main__":
    main()
