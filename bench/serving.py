"""Model-server benchmark: latency (p50 / p99) for 1 and 8 faces per request over gRPC and REST, and
requests per second with 8 concurrent clients.

    python -m bench.serving                       # starts its own model server on free ports
    python -m bench.serving --grpc localhost:8500 --rest http://localhost:8501 --models emotion age gender

Clients run on the same machine as the server (so they compete for its cores): figures are end to end,
client serialisation included. Faces are real (FER2013 PublicTest / UTKFace) when ../shared is there.
Two more rows per model split a Predict's time: a GetModelStatus round trip (gRPC with no inference) and the
ONNX Runtime session alone in this process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import orjson
import requests

from serving.protocol.protos import tensorflow_serving_pb2 as tfs
from serving.protocol.protos import tensorflow_serving_pb2_grpc as tfs_grpc
from serving.protocol.tensors import from_numpy

ROOT = Path(__file__).resolve().parents[1]


def faces_for(model: str, count: int, rest_url: str) -> np.ndarray:
    """Real faces preprocessed per the model's own metadata (falls back to noise without ../shared)."""
    info = requests.get(f"{rest_url}/v1/models/{model}/metadata", timeout=10).json()["metadata"]["emotion_detector"]
    _, height, width, channels = info["input"]["shape"]
    shared = Path(os.environ.get("EMOTION_SHARED_DIR", ROOT.parent / "shared"))
    pixels = None
    if channels == 1 and (shared / "data/fer2013/fer2013.npz").exists():
        archive = np.load(shared / "data/fer2013/fer2013.npz")
        pixels = archive["X"][archive["usage"] == 1][:count, :, :, None]
    elif channels == 3 and (shared / "data/utkface/images").is_dir():
        import cv2

        files = sorted((shared / "data/utkface/images").glob("*.jpg"))[:count]
        pixels = np.stack([cv2.resize(cv2.imread(str(f))[:, :, ::-1], (width, height), interpolation=cv2.INTER_AREA) for f in files])
    if pixels is None:
        pixels = np.random.default_rng(0).integers(0, 256, (count, height, width, channels), dtype=np.uint8)
    norm = info["input"]["normalization"]
    return ((pixels.astype(np.float32) / 255 - norm["mean"]) / norm["std"]).astype(np.float32)


class GrpcClient:
    def __init__(self, target: str, model: str, faces: np.ndarray):
        self.channel = grpc.insecure_channel(target)
        self.stub = tfs_grpc.PredictionServiceStub(self.channel)
        self.request = tfs.PredictRequest(model_spec=tfs.ModelSpec(name=model))
        self.request.inputs["image"].CopyFrom(from_numpy(faces))

    def __call__(self) -> None:
        self.stub.Predict(self.request, timeout=10)


class GrpcStatusClient:
    """A GetModelStatus call: the gRPC round trip with no inference, the floor under any Predict."""

    def __init__(self, target: str, model: str):
        self.channel = grpc.insecure_channel(target)
        self.stub = tfs_grpc.ModelServiceStub(self.channel)
        self.request = tfs.GetModelStatusRequest(model_spec=tfs.ModelSpec(name=model))

    def __call__(self) -> None:
        self.stub.GetModelStatus(self.request, timeout=10)


def in_process_model(model: str, faces: np.ndarray, intra_op_threads: int):
    """The ONNX session alone, in this process, with the server's default session options."""
    from serving.registry import ModelRegistry, ServingOptions, discover

    registry = ModelRegistry(discover(ROOT / "serving" / "models"), ServingOptions(intra_op_threads=intra_op_threads))
    registry.refresh()
    served = registry.resolve(model)
    return lambda: served.predict({"image": faces})


class RestClient:
    def __init__(self, url: str, model: str, faces: np.ndarray):
        self.session = requests.Session()
        self.url = f"{url}/v1/models/{model}:predict"
        self.body = orjson.dumps({"instances": faces}, option=orjson.OPT_SERIALIZE_NUMPY)

    def __call__(self) -> None:
        answer = self.session.post(self.url, data=self.body, headers={"Content-Type": "application/json"}, timeout=10)
        answer.raise_for_status()


def latency_ms(call, requests_count: int, warmup: int = 50) -> dict[str, float]:
    for _ in range(warmup):
        call()
    samples = []
    for _ in range(requests_count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p99_ms": round(samples[int(len(samples) * 0.99) - 1], 3),
        "mean_ms": round(statistics.fmean(samples), 3),
    }


def throughput_rps(make_call, clients: int, seconds: float) -> float:
    calls = [make_call() for _ in range(clients)]
    for call in calls:
        call()
    done = [0] * clients
    stop = threading.Event()

    def worker(index: int) -> None:
        while not stop.is_set():
            calls[index]()
            done[index] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return round(sum(done) / (time.perf_counter() - started), 1)


def start_server(extra: list[str]) -> tuple[subprocess.Popen, str, str]:
    from tests.conftest import free_port, wait_until

    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(  # nosec B603  # a fixed argument list, no shell
        [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", str(grpc_port), "--rest_api_port", str(rest_port), *extra],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    rest_url = f"http://127.0.0.1:{rest_port}"
    wait_until(lambda: requests.get(f"{rest_url}/readyz", timeout=1).ok, 60, "model server", process)
    return process, f"127.0.0.1:{grpc_port}", rest_url


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grpc", help="gRPC target of a running server (default: start one)")
    parser.add_argument("--rest", help="REST URL of a running server")
    parser.add_argument("--models", nargs="+", default=["emotion"])
    parser.add_argument("--requests", type=int, default=1000, help="timed requests per latency figure")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput run")
    parser.add_argument("--server-args", nargs=argparse.REMAINDER, default=[], help="extra flags for the started server")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)

    process = None
    if args.grpc and args.rest:
        grpc_target, rest_url = args.grpc, args.rest
    else:
        process, grpc_target, rest_url = start_server(args.server_args)
    try:
        results = []
        for model in args.models:
            faces = faces_for(model, 8, rest_url)
            clients = {
                "grpc": lambda n, m=model, f=faces: GrpcClient(grpc_target, m, f[:n]),
                "rest": lambda n, m=model, f=faces: RestClient(rest_url, m, f[:n]),
            }
            for batch in (1, 8):
                for protocol, make in clients.items():
                    row = {"model": model, "faces": batch, "protocol": protocol, **latency_ms(make(batch), args.requests)}
                    results.append(row)
                    print(json.dumps(row), flush=True)
            floor = {
                "model": model,
                "faces": 0,
                "protocol": "grpc status (no inference)",
                **latency_ms(GrpcStatusClient(grpc_target, model), args.requests),
            }
            alone = {
                "model": model,
                "faces": 1,
                "protocol": "in process, ONNX Runtime only",
                **latency_ms(in_process_model(model, faces[:1], min(2, os.cpu_count() or 1)), args.requests),
            }
            for row in (floor, alone):
                results.append(row)
                print(json.dumps(row), flush=True)
            for protocol, make in clients.items():
                rps = throughput_rps(lambda make=make: make(1), args.clients, args.seconds)
                row = {"model": model, "faces": 1, "protocol": protocol, "clients": args.clients, "requests_per_s": rps}
                results.append(row)
                print(json.dumps(row), flush=True)
    finally:
        if process:
            process.terminate()
            process.wait()

    print(f"\nmachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print("| model | faces | protocol | p50 ms | p99 ms | req/s (8 clients) |")
    print("|---|---|---|---|---|---|")
    for row in results:
        if "p50_ms" in row:
            print(f"| {row['model']} | {row['faces']} | {row['protocol']} | {row['p50_ms']} | {row['p99_ms']} | |")
        else:
            print(f"| {row['model']} | 1 | {row['protocol']} | | | {row['requests_per_s']} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
