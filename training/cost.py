"""CPU time per face of a network architecture, measured the way the product runs it: ONNX Runtime on the
CPU (two intra-op threads, as serving/registry.py), one face per call, float32 and int8 (QDQ, as
``training/export.py --int8``). The figure that matters is the ratio to the shipped v3 architecture on the
same machine, because absolute times depend on the CPU and on what else runs on it.

    python -m training.cost training/configs/emotion_v4.toml            # vs configs/emotion.toml (v3)
    python -m training.cost training/configs/age_gender_v4.toml --reference training/configs/age_gender.toml
    python -m training.cost --shipped serving/models/emotion/4 serving/models/emotion/3   # the shipped files

``--shipped`` times the committed model files themselves (int8 as served) with one and two threads, one face
and eight faces per call.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch import nn

from training.config import TrainConfig
from training.models import count_macs
from training.train import build


class _NHWCProbabilities(nn.Module):
    def __init__(self, network: nn.Module, head: str):
        super().__init__()
        self.network, self.head = network, head

    def forward(self, images_nhwc: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.network(images_nhwc.permute(0, 3, 1, 2))[self.head], dim=1)


def onnx_model(config: TrainConfig) -> tuple[onnx.ModelProto, tuple[int, int, int], int]:
    """The config's network as the served graph (NHWC in, first head's softmax out), plus input shape and MACs."""
    task, network = build(config)
    network.eval()
    head = next(iter(task.heads))
    shape = (task.input_size, task.input_size, task.in_channels)
    buffer = io.BytesIO()
    torch.onnx.export(
        _NHWCProbabilities(network, head),
        (torch.zeros(1, *shape),),
        buffer,
        input_names=["image"],
        output_names=["probabilities"],
        dynamic_axes={"image": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    macs = count_macs(network, (task.in_channels, task.input_size, task.input_size))
    return onnx.load_from_string(buffer.getvalue()), shape, macs


def quantized(model: onnx.ModelProto, shape: tuple[int, int, int]) -> onnx.ModelProto:
    """The shipped int8 form (training.export), calibrated on random faces: only the timing matters here."""
    from training.export import shipped_int8_form

    return shipped_int8_form(model, np.random.default_rng(0).uniform(-1, 1, (32, *shape)).astype(np.float32))


def ms_per_face(model: onnx.ModelProto, shape: tuple[int, int, int], repeats: int, threads: int = 2, batch: int = 1) -> float:
    """Median wall time of one call with ``batch`` faces, divided by ``batch``, in milliseconds."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    faces = np.random.default_rng(0).uniform(-1, 1, (batch, *shape)).astype(np.float32)
    for _ in range(20):
        session.run(None, {"image": faces})
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        session.run(None, {"image": faces})
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times) / batch


def compare(candidate: TrainConfig, reference: TrainConfig, repeats: int = 300, rounds: int = 3) -> dict[str, float]:
    """Candidate vs reference, interleaved over ``rounds`` so that load from other work hits both alike."""
    models = {}
    for name, config in (("reference", reference), ("candidate", candidate)):
        model, shape, macs = onnx_model(config)
        models[name] = {"fp32": model, "int8": quantized(model, shape), "shape": shape, "macs": macs}
    result: dict[str, float] = {
        "reference_mmacs": models["reference"]["macs"] / 1e6,
        "candidate_mmacs": models["candidate"]["macs"] / 1e6,
    }
    for precision in ("fp32", "int8"):
        timings: dict[str, list[float]] = {"reference": [], "candidate": []}
        for _ in range(rounds):
            for name, entry in models.items():
                timings[name].append(ms_per_face(entry[precision], entry["shape"], repeats))
        for name, values in timings.items():
            result[f"{name}_{precision}_ms_per_face"] = min(values)
        result[f"ratio_{precision}"] = result[f"candidate_{precision}_ms_per_face"] / result[f"reference_{precision}_ms_per_face"]
    return result


def compare_shipped(
    candidate: Path,
    reference: Path,
    repeats: int = 200,
    rounds: int = 3,
    threads: tuple[int, ...] = (1, 2),
    batches: tuple[int, ...] = (1, 8),
) -> list[dict]:
    """Time per face of two shipped model directories (model.onnx as served) per thread count and batch size,
    interleaved over ``rounds`` and the best round kept, so that load from other work hits both alike."""
    models = {}
    for name, directory in (("candidate", candidate), ("reference", reference)):
        _batch, height, width, channels = json.loads((directory / "model.json").read_text())["input"]["shape"]
        models[name] = (onnx.load(str(directory / "model.onnx")), (height, width, channels))
    rows = []
    for thread_count in threads:
        for batch in batches:
            timings: dict[str, list[float]] = {name: [] for name in models}
            for _ in range(rounds):
                for name, (model, shape) in models.items():
                    timings[name].append(ms_per_face(model, shape, repeats, thread_count, batch))
            best = {name: min(values) for name, values in timings.items()}
            rows.append(
                {
                    "threads": thread_count,
                    "batch": batch,
                    "candidate_ms_per_face": round(best["candidate"], 4),
                    "reference_ms_per_face": round(best["reference"], 4),
                    "ratio": round(best["candidate"] / best["reference"], 3),
                }
            )
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", type=Path, nargs="?", help="TOML config of the candidate")
    parser.add_argument("--shipped", type=Path, nargs=2, metavar=("CANDIDATE_DIR", "REFERENCE_DIR"), help="time two shipped models")
    parser.add_argument("--reference", type=Path, default=Path("training/configs/emotion.toml"), help="TOML config of v3")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a key of the candidate")
    parser.add_argument("--repeats", type=int, default=300)
    args = parser.parse_args(argv)
    if args.shipped:
        from training.evaluate import cpu_description  # reads /proc/cpuinfo only

        candidate, reference = args.shipped
        print(f"{candidate} vs {reference} on {cpu_description()['model_name']}, ms per face (int8 as shipped):")
        for row in compare_shipped(candidate, reference, args.repeats):
            print(
                f"{row['threads']} thread(s), batch {row['batch']}: {row['candidate_ms_per_face']:.3f} vs "
                f"{row['reference_ms_per_face']:.3f} ms = {row['ratio']:.2f}x"
            )
        return
    if args.config is None:
        parser.error("give a config or --shipped CANDIDATE_DIR REFERENCE_DIR")
    torch.set_num_threads(1)
    result = compare(TrainConfig.load(args.config, args.set), TrainConfig.load(args.reference), args.repeats)
    for key, value in result.items():
        print(f"{key}: {value:.3f}")


if __name__ == "__main__":
    main()
