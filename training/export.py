"""Export a trained checkpoint (its EMA weights) to the model server's layout:

    serving/models/<name>/<version>/model.onnx   NHWC float32 input, softmax / expected age in the graph
    serving/models/<name>/<version>/model.json   preprocessing, labels, provenance (read by the server)

    python -m training.export runs/emo-v1 --version 1               # -> emotion
    python -m training.export runs/ag-v1 --version 1                # -> age, gender and age_gender (both outputs)
    python -m training.export runs/emo-v1 --version 1 --int8        # int8, calibrated on training faces

The ONNX output is checked against PyTorch on real validation images before anything is written; an int8
model is checked against its float32 original the same way (agreement is recorded in model.json). A checkpoint
with a temperature for a head (``calibration``) gets it inside the graph and an uncertain threshold chosen on its
validation split, both described in model.json (``calibration``; ``uncertain_below`` beside the output's labels).
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

from emotion_detector.detection import DetectorOptions, FaceDetector
from emotion_detector.detection.blazeface import FULL_RANGE, SHORT_RANGE, BlazeFaceDetector
from emotion_detector.detection.centerface import CenterFaceDetector
from emotion_detector.detection.haar import HaarDetector
from emotion_detector.detection.yunet import YuNetDetector
from emotion_detector.labels import EMOTIONS, GENDERS
from training.config import TrainConfig
from training.crop_calibration import calibrate
from training.data import FaceSet, Splits, default_data_dir, shared_dir
from training.metrics import ECE_BINS, expected_calibration_error, softmax, uncertain_figures, uncertain_threshold
from training.onnx_graphs import select_outputs
from training.train import PIXEL_MEAN, PIXEL_STD, build, normalise

OPSET = 17


@dataclass(frozen=True)
class ModelOutput:
    name: str  # the ONNX output's name in the served model
    head: str  # the network head it comes from
    labels: tuple[str, ...] | None  # None: expected age in years


@dataclass(frozen=True)
class ExportSpec:
    name: str
    outputs: tuple[ModelOutput, ...]


# One graph per task with an output per head (named after the head) is exported and quantised once; each served
# model is that graph cut down to its outputs, so age_gender gives exactly what age and gender give.
SPECS = {
    "emotion": [ExportSpec("emotion", (ModelOutput("probabilities", "emotion", EMOTIONS),))],
    "age_gender": [
        ExportSpec("age", (ModelOutput("years", "age", None),)),
        ExportSpec("gender", (ModelOutput("probabilities", "gender", GENDERS),)),
        ExportSpec("age_gender", (ModelOutput("age", "age", None), ModelOutput("gender", "gender", GENDERS))),
    ],
}


class ServingGraph(nn.Module):
    """NHWC normalised images in (TF Serving's convention), one post-processed output per head out. With
    ``flip_average`` the mirrored face is scored too and the probabilities averaged. A head with a temperature
    gives softmax(logits / T): the calibration ships inside the graph, so every client gets calibrated figures."""

    def __init__(self, network: nn.Module, heads: tuple[str, ...], flip_average: bool, temperatures: dict[str, float] | None = None):
        super().__init__()
        self.network, self.heads, self.flip_average = network, heads, flip_average
        self.temperatures = dict(temperatures or {})

    def forward(self, images_nhwc: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = images_nhwc.permute(0, 3, 1, 2)
        n = x.shape[0]
        logits = self.network(torch.cat([x, torch.flip(x, dims=[3])]) if self.flip_average else x)
        outputs = []
        for head in self.heads:
            scaled = logits[head] / self.temperatures[head] if head in self.temperatures else logits[head]
            probabilities = F.softmax(scaled, dim=1)
            if self.flip_average:
                probabilities = (probabilities[:n] + probabilities[n:]) / 2
            if head == "age":
                probabilities = probabilities @ torch.arange(probabilities.shape[1], dtype=torch.float32)  # expected years
            outputs.append(probabilities)
        return tuple(outputs)


def load_trained(run_dir: Path, weights: str = "ema") -> tuple[TrainConfig, nn.Module, dict]:
    """The checkpoint's network with its EMA weights (default) or its last raw weights."""
    state = torch.load(run_dir / "last.pt", weights_only=False)  # nosec B614  # our own run's checkpoint
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
    fitted = state.get("calibration", {})
    temperatures = {head: fitted[f"{head}_temperature"] for head in task.heads if f"{head}_temperature" in fitted}
    graph = ServingGraph(network, tuple(task.heads), flip_average, temperatures).eval()
    full = to_onnx(graph, sample)
    precision = {"weights": "float32"}
    if int8:
        full, precision = quantize_int8(full, calibration_faces(splits.train), validation_faces(splits.val))
    calibration = {head: describe_calibration(full, head, temperature, splits, config, state) for head, temperature in temperatures.items()}
    metadata = {
        "version": version,
        "input": _input_metadata(task, measure_face_crops(splits.val)),
        "flip_average": flip_average,
        "training": {
            "run": config.run_name,
            "architecture": config.model,
            "model_args": config.model_args,
            "task_args": config.task_args,
            **({"recipe": state["recipe"]} if "recipe" in state else {}),
            "epochs": state["epoch"] + 1,
            "final_validation": _final_validation(state["metrics"]),
            "weights": "exponential moving average" if weights == "ema" else "last step",
        },
        "calibration": calibration,
    }
    return write_models(full, SPECS[config.task], metadata, precision, models_dir)


def _final_validation(metrics: dict) -> dict:
    """The checkpoint's validation figures: flat ones as they are; of the GPU recipe's nested reports (which also
    hold test-set figures, not for model.json), the validation accuracy and ECE per label set."""
    if "val" not in metrics:
        return metrics
    return {
        f"val_{labels}_{key}": values[key]
        for labels, values in metrics["val"].items()
        for key in ("accuracy", f"ece_{ECE_BINS}_bins")
        if isinstance(values, dict) and key in values
    }


# What a head's uncertain threshold is judged against on the validation split: the label the product promises.
CALIBRATION_TARGETS = {
    "emotion": ("ferplus_label", "the FER+ majority label (training/data.py ferplus_majority)"),
    "gender": ("gender", "the UTKFace gender label"),
}
UNCERTAIN_RULE = (
    "a face is uncertain when its calibrated top probability is below uncertain_below: the largest threshold "
    "(0.01 steps) at which the validation faces below it are right against {target} at most half of the time, "
    "so what is shown as uncertain is more often wrong than right"
)


def describe_calibration(
    model_proto: onnx.ModelProto, head: str, temperature: float, splits: Splits, config: TrainConfig, state: dict
) -> dict:
    """model.json's calibration of one head: the temperature in the graph and the uncertain threshold, chosen on
    the validation split (never the test set) with the exported file itself, and what both give there."""
    if splits.test is None:
        raise ValueError(
            f"{config.run_name}: its validation split is also its test set, so a threshold chosen on it would be "
            "chosen on the test set; train with a separate validation split (task option val_from_training)"
        )
    target, target_text = CALIBRATION_TARGETS[head]
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    faces = normalise(splits.val.images).permute(0, 2, 3, 1).contiguous().numpy()
    probabilities = np.concatenate([session.run([head], {"image": faces[i : i + 512]})[0] for i in range(0, len(faces), 512)])
    labels = splits.val.targets[target].numpy()
    threshold = uncertain_threshold(probabilities, labels)
    # softmax(T * log p) = softmax(logits): the uncalibrated figures from the served output, for comparison
    raw = softmax(np.log(np.maximum(probabilities, 1e-30)) * temperature)
    scored = labels >= 0
    split = dict(config.task_args)
    where = f"{round(100 * split['val_from_training'])} % of Training, seed {split['val_seed']}, " if "val_from_training" in split else ""
    validation = {
        "n": int(scored.sum()),
        "accuracy": round(float((probabilities[scored].argmax(axis=1) == labels[scored]).mean()), 4),
        f"ece_{ECE_BINS}_bins_before": round(expected_calibration_error(raw[scored], labels[scored]), 4),
        f"ece_{ECE_BINS}_bins": round(expected_calibration_error(probabilities[scored], labels[scored]), 4),
    }
    if threshold is not None:
        figures = uncertain_figures(probabilities, labels, threshold)
        validation |= {key: figures[key] for key in ("n_uncertain", "share_uncertain", "accuracy_uncertain", "accuracy_confident")}
    fitted_on = state["calibration"].get("fitted_on", "the validation split")
    described = {
        "method": "temperature scaling",
        "temperature": temperature,
        "fitted_on": f"{fitted_on}: {where}{len(splits.val):,} faces",
        "uncertain_below": threshold,
        "rule": UNCERTAIN_RULE.format(target=target_text),
        "validation": validation,
    }
    print(f"calibration of {head}: {described}")
    return described


def to_onnx(graph: ServingGraph, sample: torch.Tensor) -> onnx.ModelProto:
    """The graph with one output per head, named after the head; checked against PyTorch on ``sample``."""
    graph.eval()  # the export restores the mode it found, and a training-mode check would compare against dropout
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        torch.onnx.export(
            graph,
            (sample[:1],),
            str(onnx_path),
            input_names=["image"],
            output_names=list(graph.heads),
            dynamic_axes={"image": {0: "batch"}, **{head: {0: "batch"} for head in graph.heads}},
            opset_version=OPSET,
            dynamo=False,
        )
        model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model)
    _check_against_torch(model, graph, sample)
    return model


def calibration_faces(train: FaceSet, count: int = 512) -> np.ndarray:
    """The same seeded training faces for every head's model: NHWC, normalised as served."""
    chosen = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:count]
    return normalise(train.images[chosen]).permute(0, 2, 3, 1).contiguous().numpy()


def validation_faces(val: FaceSet, count: int = 1024) -> np.ndarray:
    return normalise(val.images[:count]).permute(0, 2, 3, 1).contiguous().numpy()


def write_models(full: onnx.ModelProto, specs: list[ExportSpec], metadata: dict, precision: dict, models_dir: Path) -> list[Path]:
    """Each spec's model (``full`` cut down to its outputs) and model.json; ``metadata`` holds what all share."""
    written = []
    for spec in specs:
        model = select_outputs(full, {output.name: output.head for output in spec.outputs})
        model.doc_string = f"Emotion Detector {spec.name} v{metadata['version']} (trained by training/, run {metadata['training']['run']})"
        target = models_dir / spec.name / str(metadata["version"])
        target.mkdir(parents=True, exist_ok=True)
        onnx.save(model, str(target / "model.onnx"))
        (target / "model.json").write_text(json.dumps(_metadata(spec, metadata, precision), indent=2) + "\n")
        written.append(target)
        print(f"wrote {target}/model.onnx ({(target / 'model.onnx').stat().st_size / 1e6:.2f} MB)")
    return written


# uint8 activations x 7-bit weights (reduce_range): ONNX Runtime's u8s8 kernels on x86 CPUs without AVX-512 VNNI
# add pairs of products in int16 (vpmaddubsw), which full 8-bit weights overflow (255 * 127 * 2 > 32767) and 7-bit
# ones cannot, so every x86-64 CPU gives the same results. S8S8 is run as u8s8 there and overflows the same way;
# U8U8 is exact but slower than float32 on VNNI CPUs. Measurements: training/reports/quantization.md.
PRECISION_TEXT = (
    "convolutions int8 per channel with 7-bit weights (reduce_range) and uint8 activations (ONNX QDQ, static), "
    "which gives the same results on every x86-64 CPU, with or without AVX-512 VNNI; dense head float32"
)


def quantize_int8(model_proto: onnx.ModelProto, calibration: np.ndarray, validation: np.ndarray) -> tuple[onnx.ModelProto, dict]:
    """Static int8 quantisation of the convolutions (QDQ, per-channel weights, activation ranges from real
    training faces): about 2x faster on this CPU. Refuses a result that strays from the float32 model on
    validation faces; the agreement is measured per output."""
    quantized = shipped_int8_form(model_proto, calibration)
    names = [output.name for output in model_proto.graph.output]
    reference, result = (
        ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(names, {"image": validation})
        for m in (model_proto, quantized)
    )
    agreement = {name: _agreement(expected, got) for name, expected, got in zip(names, reference, result, strict=True)}
    print(f"int8 vs float32 on {len(validation)} validation faces: {agreement}")
    for name, measured in agreement.items():
        if measured.get("mean_abs_difference_years", 0) > 1.0:
            raise RuntimeError(f"the int8 model's {name!r} strays too far from float32: {measured}")
        # Near-uniform outputs (an untrained model) may swap their top label on noise; their distance stays tiny.
        if "same_top_label" in measured and measured["same_top_label"] < 0.95 and measured["mean_total_variation"] > 0.01:
            raise RuntimeError(f"the int8 model's {name!r} strays too far from float32: {measured}")
    precision = {
        "weights": PRECISION_TEXT,
        "calibrated_on_training_faces": len(calibration),
        "agreement_with_float32_on_validation": {"faces": len(validation), **agreement},
    }
    return quantized, precision


def shipped_int8_form(model_proto: onnx.ModelProto, calibration: np.ndarray) -> onnx.ModelProto:
    """The int8 form every shipped model has (PRECISION_TEXT), activation ranges from ``calibration`` (NHWC faces)."""
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
            reduce_range=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["Conv"],  # the bulk of the work; the small dense head and softmax stay float32
        )
        return onnx.load(str(int8))


def _agreement(expected: np.ndarray, got: np.ndarray) -> dict:
    if expected.ndim == 1:
        return {"mean_abs_difference_years": round(float(np.abs(expected - got).mean()), 3)}
    return {
        "same_top_label": round(float((expected.argmax(1) == got.argmax(1)).mean()), 4),
        "mean_total_variation": round(float(np.abs(expected - got).sum(axis=1).mean() / 2), 4),
    }


def _check_against_torch(model_proto: onnx.ModelProto, graph: nn.Module, sample: torch.Tensor) -> None:
    session = ort.InferenceSession(model_proto.SerializeToString(), providers=["CPUExecutionProvider"])
    onnx_outputs = session.run(None, {"image": sample.numpy()})
    with torch.no_grad():
        torch_outputs = [o.numpy() for o in graph(sample)]
    for onnx_out, torch_out in zip(onnx_outputs, torch_outputs, strict=True):
        worst = float(np.abs(onnx_out - torch_out).max())
        tolerance = 1e-3 if torch_out.ndim == 1 else 1e-4  # years vs probabilities
        if worst > tolerance:
            raise RuntimeError(f"ONNX output differs from PyTorch by {worst:.2e} (tolerance {tolerance:.0e})")


def crop_rule_detectors() -> list[FaceDetector]:
    """Every detector whose boxes the served models are framed for (YuNet when its file is in ../shared)."""
    options = DetectorOptions()
    detectors: list[FaceDetector] = [
        CenterFaceDetector(options),
        HaarDetector(options),
        BlazeFaceDetector(options, SHORT_RANGE),
        BlazeFaceDetector(options, FULL_RANGE),
    ]
    yunet = shared_dir() / "models" / "yunet" / "face_detection_yunet.onnx"
    if yunet.is_file():
        detectors.append(YuNetDetector(yunet, options))
    return detectors


def measure_face_crops(faces: FaceSet, count: int = 400, detectors: list[FaceDetector] | None = None) -> dict:
    """How each detector's boxes sit on this dataset's images (see training/crop_calibration.py). BlazeFace's
    two variants draw different boxes (full range: larger, centred lower), so each has a rule."""
    step = max(1, len(faces) // count)
    images = faces.images[::step].permute(0, 2, 3, 1).numpy()
    images_bgr = [cv2.cvtColor(i, cv2.COLOR_GRAY2BGR) if i.shape[2] == 1 else cv2.cvtColor(i, cv2.COLOR_RGB2BGR) for i in images]
    rules = {}
    for detector in detectors if detectors is not None else crop_rule_detectors():
        rule, measured = calibrate(images_bgr, detector)
        rules[detector.name] = {**dataclasses.asdict(rule), "measured_on_images": measured}
        print(f"face crop for {detector.name}: {rule} ({measured} of {len(images_bgr)} images)")
    return rules


def _input_metadata(task, face_crop: dict) -> dict:
    channels = task.in_channels
    return {
        "name": "image",
        "dtype": "float32",
        "shape": [-1, task.input_size, task.input_size, channels],
        "layout": "NHWC",
        "color": "grayscale" if channels == 1 else "RGB",
        "normalization": {"formula": "(pixel / 255 - mean) / std", "mean": PIXEL_MEAN, "std": PIXEL_STD},
        # square crop per detector: side = k * box width, centre shifted from the box centre
        "face_crop": face_crop,
    }


def _metadata(spec: ExportSpec, shared: dict, precision: dict) -> dict:
    """model.json: a single-output model says ``output`` (with its name), a multi-output one ``outputs`` by name."""
    per_head = shared.get("calibration", {})
    calibration = {output.name: per_head[output.head] for output in spec.outputs if output.head in per_head}
    described = {output.name: _output_metadata(output, calibration.get(output.name)) for output in spec.outputs}
    if len(spec.outputs) == 1:
        outputs = {"output": {"name": spec.outputs[0].name, **described[spec.outputs[0].name]}}
    else:
        outputs = {"outputs": described}
    agreement = precision.get("agreement_with_float32_on_validation")
    if agreement:  # measured per head; a single-output model keeps the flat form
        faces = agreement["faces"]
        mine = {output.name: agreement[output.head] for output in spec.outputs}
        agreement = {"faces": faces, **(next(iter(mine.values())) if len(mine) == 1 else mine)}
        precision = {**precision, "agreement_with_float32_on_validation": agreement}
    return {
        "name": spec.name,
        "version": shared["version"],
        "input": shared["input"],
        **outputs,
        # one output's calibration at the top level; a multi-output model's by output name
        **({"calibration": next(iter(calibration.values())) if len(spec.outputs) == 1 else calibration} if calibration else {}),
        "flip_average": shared["flip_average"],
        "precision": precision,
        "training": shared["training"],
    }


def _output_metadata(output: ModelOutput, calibration: dict | None) -> dict:
    if output.labels:
        described = {"dtype": "float32", "shape": [-1, len(output.labels)], "labels": list(output.labels)}
        # clients read the threshold beside the labels; an output without one is never uncertain
        if calibration and calibration["uncertain_below"] is not None:
            described["uncertain_below"] = calibration["uncertain_below"]
        return described
    return {"dtype": "float32", "shape": [-1], "unit": "years"}


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
