"""The model server process: gRPC on --port, REST on --rest_api_port, flags named like TF Serving's.

python -m serving                                            # the shipped models (serving/models/*), :8500 gRPC, :8501 REST
python -m serving --model_name emotion --model_base_path serving/models/emotion
python -m serving --model_config_file models.config          # TF Serving text-format ModelServerConfig
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from pathlib import Path

import waitress

from serving import SHIPPED_MODELS
from serving.batching import BatchingOptions
from serving.grpc_api import build_server, set_health
from serving.providers import EXECUTION_PREFERENCES
from serving.registry import ModelConfig, ModelRegistry, ServingOptions, discover, parse_model_config_file
from serving.rest_api import create_rest_app

log = logging.getLogger("serving")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m serving", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500)")
    parser.add_argument("--rest_api_port", type=int, default=8501, help="REST port (default 8501; 0 disables REST)")
    parser.add_argument(
        "--host",
        default=os.environ.get("MODEL_SERVER_HOST", "127.0.0.1"),
        help="address to bind (default 127.0.0.1: only this machine; containers pass --host 0.0.0.0)",
    )
    parser.add_argument("--model_name", help="serve the single model in --model_base_path under this name")
    parser.add_argument(
        "--model_base_path", type=Path, default=SHIPPED_MODELS, help="a model's version directories, or a directory of models"
    )
    parser.add_argument("--model_config_file", type=Path, help="text-format ModelServerConfig (overrides --model_base_path)")
    parser.add_argument(
        "--file_system_poll_wait_seconds", type=float, default=2.0, help="how often to look for new / removed versions (0: never)"
    )
    parser.add_argument("--intra_op_threads", type=int, default=min(2, os.cpu_count() or 1), help="ONNX Runtime threads per request")
    parser.add_argument("--max_batch_size", type=int, default=256, help="most faces per request")
    parser.add_argument("--grpc_max_threads", type=int, default=16)
    parser.add_argument("--rest_api_num_threads", type=int, default=16)
    # Off by default: spinning threads shave ~0.5 ms off a lone request but take the CPU from whatever shares
    # the machine (bench/live.py: 66 ms per frame with spinning, 30 ms without, web app and server on 2 cores).
    parser.add_argument("--allow_spinning", action="store_true", help="spin-wait idle ONNX Runtime threads (a dedicated machine)")
    parser.add_argument(
        "--enable_batching", action="store_true", help="run requests for one model that arrive together as one batch (TF Serving's flag)"
    )
    parser.add_argument("--batching_parameters_file", type=Path, help="text-format BatchingParameters (implies --enable_batching)")
    parser.add_argument(
        "--execution_provider",
        choices=EXECUTION_PREFERENCES,
        default=os.environ.get("MODEL_SERVER_EXECUTION_PROVIDER", "auto"),
        help="auto (default): an NVIDIA GPU when ONNX Runtime has one (onnxruntime-gpu), else the CPU; cuda: a GPU or no start",
    )
    return parser.parse_args(argv)


def model_configs(args: argparse.Namespace) -> list[ModelConfig]:
    if args.model_config_file:
        return parse_model_config_file(args.model_config_file)
    if args.model_name:
        return [ModelConfig(args.model_name, args.model_base_path)]
    configs = discover(args.model_base_path)
    if not configs:
        raise SystemExit(f"no models found under {args.model_base_path} (expected <name>/<version>/model.onnx)")
    return configs


def batching_options(args: argparse.Namespace) -> BatchingOptions | None:
    if args.batching_parameters_file:
        return BatchingOptions.from_file(args.batching_parameters_file)
    return BatchingOptions() if args.enable_batching else None


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    options = ServingOptions(
        intra_op_threads=args.intra_op_threads,
        max_batch_size=args.max_batch_size,
        allow_spinning=args.allow_spinning,
        execution_provider=args.execution_provider,
        batching=batching_options(args),
    )
    registry = ModelRegistry(model_configs(args), options)
    registry.refresh()

    grpc_server, health = build_server(registry, f"{args.host}:{args.port}", args.grpc_max_threads)
    set_health(health, registry.ready)
    grpc_server.start()
    log.info("gRPC on %s:%d serving %s", args.host, args.port, registry.names())

    rest_server = None
    if args.rest_api_port:
        rest_server = waitress.create_server(
            create_rest_app(registry),
            host=args.host,
            port=args.rest_api_port,
            threads=args.rest_api_num_threads,
            ident="emotion-detector-model-server",
        )
        threading.Thread(target=rest_server.run, name="rest", daemon=True).start()
        log.info("REST on %s:%d", args.host, args.rest_api_port)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(args.file_system_poll_wait_seconds or None):
        registry.refresh()
        set_health(health, registry.ready)
    log.info("shutting down")
    if rest_server:
        rest_server.close()
    grpc_server.stop(grace=2).wait()


if __name__ == "__main__":
    main()
