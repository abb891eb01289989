"""Models on disk → loaded ONNX Runtime sessions, laid out like TF Serving:
``<base_path>/<version>/model.onnx`` (+ ``model.json``: preprocessing and labels), every numeric version
directory a version. By default every version is loaded, the highest answers requests that name none, and
``refresh()`` (polled by the server) picks up versions added or removed while running."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort

from serving.batching import Batcher, BatchingOptions
from serving.protocol.errors import InvalidArgument, NotFound, ServingError, alias_not_found
from serving.protocol.model_info import read_model_json
from serving.protocol.protos import tensorflow_framework_pb2 as tf
from serving.protocol.tensors import data_type, dtype_name
from serving.providers import ExecutionPreference, inference_session, provider_in_use

log = logging.getLogger("serving")

SIGNATURE_NAME = "serving_default"
PREDICT_METHOD = "tensorflow/serving/predict"
_ORT_TYPES = {
    "tensor(float)": np.dtype("float32"),
    "tensor(double)": np.dtype("float64"),
    "tensor(float16)": np.dtype("float16"),
    "tensor(int8)": np.dtype("int8"),
    "tensor(int16)": np.dtype("int16"),
    "tensor(int32)": np.dtype("int32"),
    "tensor(int64)": np.dtype("int64"),
    "tensor(uint8)": np.dtype("uint8"),
    "tensor(bool)": np.dtype("bool"),
}


@dataclass(frozen=True)
class VersionPolicy:
    """TF Serving's servable version policy: ``all`` versions, the ``latest`` N, or ``specific`` ones."""

    kind: str = "all"
    num_versions: int = 1
    versions: tuple[int, ...] = ()

    def select(self, available: list[int]) -> list[int]:
        if self.kind == "latest":
            return sorted(available)[-self.num_versions :]
        if self.kind == "specific":
            return sorted(v for v in available if v in self.versions)
        return sorted(available)


@dataclass(frozen=True)
class ModelConfig:
    name: str
    base_path: Path
    policy: VersionPolicy = field(default_factory=VersionPolicy)
    version_labels: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: np.dtype
    shape: tuple[int | None, ...]  # None: any size (the batch dimension)

    def describe(self) -> str:
        return "[" + ", ".join("-1" if d is None else str(d) for d in self.shape) + "]"

    def to_tensor_info(self) -> tf.TensorInfo:
        info = tf.TensorInfo(name=f"{self.name}:0", dtype=data_type(self.dtype))
        info.tensor_shape.dim.extend(tf.TensorShapeProto.Dim(size=-1 if d is None else d) for d in self.shape)
        return info


@dataclass(frozen=True)
class ServingOptions:
    intra_op_threads: int = 2
    max_batch_size: int = 256
    allow_spinning: bool = False  # spin-waiting ORT threads answer sooner but burn CPU between requests
    execution_provider: ExecutionPreference = "auto"  # a GPU when ONNX Runtime has one (providers.py)
    batching: BatchingOptions | None = None  # None: each request runs alone (--enable_batching turns it on)


class ServedModel:
    """One loaded version of one model."""

    def __init__(self, name: str, version: int, directory: Path, options: ServingOptions):
        self.name, self.version, self.directory = name, version, directory
        self.max_batch_size = options.max_batch_size
        session_options = ort.SessionOptions()
        session_options.intra_op_num_threads = options.intra_op_threads
        session_options.inter_op_num_threads = 1
        session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if options.allow_spinning else "0")
        self.session = inference_session(str(directory / "model.onnx"), session_options, options.execution_provider)
        self.execution_provider = provider_in_use(self.session)
        self.inputs = [self._spec(i) for i in self.session.get_inputs()]
        self.outputs = [self._spec(o) for o in self.session.get_outputs()]
        self.info: dict = read_model_json(directory, name, version)  # sent unchanged as the model's metadata
        # Only a model whose every tensor has the batch first can be run for several requests at once.
        batchable = all(spec.shape and spec.shape[0] is None for spec in self.inputs + self.outputs)
        self._batcher = Batcher(self._run_all, options.batching, f"{name} v{version}") if options.batching and batchable else None

    def close(self) -> None:
        if self._batcher is not None:
            self._batcher.close()

    def _run_all(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        names = [spec.name for spec in self.outputs]
        return dict(zip(names, self.session.run(names, inputs), strict=True))

    @property
    def metadata(self) -> dict:
        """What the server says about the model (the ``emotion_detector`` metadata field): its model.json, and
        where it runs, so a client's health report can name it."""
        return {**self.info, "execution_provider": self.execution_provider}

    @staticmethod
    def _spec(node) -> TensorSpec:
        if node.type not in _ORT_TYPES:
            raise ValueError(f"unsupported ONNX tensor type {node.type} for {node.name}")
        return TensorSpec(node.name, _ORT_TYPES[node.type], tuple(d if isinstance(d, int) else None for d in node.shape))

    def signature_def(self) -> tf.SignatureDef:
        signature = tf.SignatureDef(method_name=PREDICT_METHOD)
        for spec in self.inputs:
            signature.inputs[spec.name].CopyFrom(spec.to_tensor_info())
        for spec in self.outputs:
            signature.outputs[spec.name].CopyFrom(spec.to_tensor_info())
        return signature

    def validate(self, inputs: dict[str, np.ndarray]) -> None:
        expected = {spec.name for spec in self.inputs}
        unknown = sorted(set(inputs) - expected)
        if unknown:
            raise alias_not_found("input", unknown, sorted(expected))
        missing = sorted(expected - set(inputs))
        if missing:
            raise InvalidArgument(f"missing input(s): {', '.join(missing)}. Inputs expected: {{{', '.join(sorted(expected))}}}.")
        batch_sizes = set()
        for spec in self.inputs:
            array = inputs[spec.name]
            if array.dtype != spec.dtype:
                raise InvalidArgument(
                    f"input '{spec.name}' must be {dtype_name(data_type(spec.dtype))}, got {dtype_name(data_type(array.dtype))}"
                )
            fits = array.ndim == len(spec.shape) and all(d is None or d == s for d, s in zip(spec.shape, array.shape, strict=True))
            if not fits:
                raise InvalidArgument(f"input '{spec.name}' must have shape {spec.describe()} (-1: any size), got {list(array.shape)}")
            if array.dtype.kind == "f" and not np.isfinite(array).all():
                raise InvalidArgument(f"input '{spec.name}' contains NaN or infinite values")
            if array.ndim:
                batch_sizes.add(array.shape[0])
        if len(batch_sizes) > 1:
            raise InvalidArgument(f"inputs must share one batch size, got {sorted(batch_sizes)}")
        if batch_sizes and max(batch_sizes) > self.max_batch_size:
            raise InvalidArgument(f"batch of {max(batch_sizes)} exceeds the limit of {self.max_batch_size} per request")

    def predict(self, inputs: dict[str, np.ndarray], output_filter: list[str] | None = None) -> dict[str, np.ndarray]:
        self.validate(inputs)
        names = [spec.name for spec in self.outputs]
        if output_filter:
            unknown = sorted(set(output_filter) - set(names))
            if unknown:
                raise alias_not_found("output", unknown, names)
            names = [n for n in names if n in output_filter]
        if any(array.ndim and array.shape[0] == 0 for array in inputs.values()):
            return {n: np.zeros((0, *[d or 0 for d in self._output(n).shape[1:]]), self._output(n).dtype) for n in names}
        try:
            if self._batcher is not None:
                outputs = self._batcher.run(inputs)
                return {n: outputs[n] for n in names}
            return dict(zip(names, self.session.run(names, inputs), strict=True))
        except ServingError:
            raise
        except Exception as error:  # ORT's own validation: report it to the client, keep serving
            raise InvalidArgument(f"model {self.name} v{self.version} could not run on this input: {error}") from error

    def _output(self, name: str) -> TensorSpec:
        return next(spec for spec in self.outputs if spec.name == name)


@dataclass
class VersionState:
    version: int
    model: ServedModel | None = None
    error: str = ""


class ModelRegistry:
    def __init__(self, configs: list[ModelConfig], options: ServingOptions = ServingOptions()):
        names = [c.name for c in configs]
        if len(set(names)) != len(names):
            raise ValueError(f"model names must be unique, got {names}")
        self.configs = {c.name: c for c in configs}
        self.options = options
        self._states: dict[str, dict[int, VersionState]] = {c.name: {} for c in configs}
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Load versions that appeared on disk, unload those that went away. Never raises for one bad
        version: its error is kept and shown in the model status."""
        with self._lock:
            for name, config in self.configs.items():
                on_disk = _versions_on_disk(config.base_path)
                wanted = set(config.policy.select(on_disk))
                current = dict(self._states[name])
                for version in sorted(wanted - set(current)):
                    current[version] = self._load(name, version, config.base_path / str(version))
                for version in sorted(set(current) - wanted):
                    log.info("unloaded %s version %d", name, version)
                    if (unloaded := current.pop(version).model) is not None:
                        unloaded.close()
                self._states[name] = current  # swapped whole: readers never see a half-updated dict

    def _load(self, name: str, version: int, directory: Path) -> VersionState:
        try:
            model = ServedModel(name, version, directory, self.options)
        except Exception as error:
            log.error("failed to load %s version %d from %s: %s", name, version, directory, error)
            return VersionState(version, error=f"{type(error).__name__}: {error}")
        inputs = [(s.name, s.describe()) for s in model.inputs]
        log.info("loaded %s version %d from %s on the %s (inputs %s)", name, version, directory, model.execution_provider, inputs)
        return VersionState(version, model)

    @property
    def ready(self) -> bool:
        return all(any(s.model for s in states.values()) for states in self._states.values())

    def names(self) -> list[str]:
        return sorted(self.configs)

    def resolve(self, name: str, version: int | None = None, label: str | None = None) -> ServedModel:
        if name not in self._states:
            raise NotFound(f"Servable not found for request: Latest({name})")
        states = self._states[name]
        if label is not None:
            if label not in self.configs[name].version_labels:
                raise InvalidArgument(f"Unrecognized servable version label: {label}")
            version = self.configs[name].version_labels[label]
        if version is None:
            available = [v for v, s in states.items() if s.model]
            if not available:
                raise NotFound(f"Servable not found for request: Latest({name})")
            return states[max(available)].model
        state = states.get(version)
        if state is None or state.model is None:
            raise NotFound(f"Servable not found for request: Specific({name}, {version})")
        return state.model

    def status(self, name: str, version: int | None = None) -> list[VersionState]:
        if name not in self._states:
            raise NotFound(f"Could not find any versions of model {name}")
        states = self._states[name]
        if version is not None:
            if version not in states:
                raise NotFound(f"Could not find version {version} of model {name}")
            return [states[version]]
        return [states[v] for v in sorted(states, reverse=True)]


def _versions_on_disk(base_path: Path) -> list[int]:
    if not base_path.is_dir():
        return []
    return sorted(int(p.name) for p in base_path.iterdir() if p.is_dir() and p.name.isdigit() and (p / "model.onnx").exists())


def discover(model_base_path: Path) -> list[ModelConfig]:
    """``--model_base_path``: a directory of numeric versions is one model (named after the directory);
    otherwise each subdirectory is a model."""
    model_base_path = Path(model_base_path)
    if _versions_on_disk(model_base_path):
        return [ModelConfig(model_base_path.name, model_base_path)]
    return [ModelConfig(p.name, p) for p in sorted(model_base_path.iterdir()) if p.is_dir() and _versions_on_disk(p)]


def parse_model_config_file(path: Path) -> list[ModelConfig]:
    """TF Serving's ``--model_config_file`` (text-format ModelServerConfig). Relative base paths are taken
    relative to the file."""
    from google.protobuf import text_format

    from serving.protocol.protos import tensorflow_serving_pb2 as tfs

    try:
        config = text_format.Parse(Path(path).read_text(), tfs.ModelServerConfig())
    except text_format.ParseError as error:
        raise ServingError(f"cannot parse model config file {path}: {error}") from error
    models = []
    for entry in config.model_config_list.config:
        if entry.model_platform not in ("", "onnx", "onnxruntime", "tensorflow"):
            raise ServingError(f"model {entry.name}: model_platform {entry.model_platform!r} is not served here (ONNX models only)")
        choice = entry.model_version_policy.WhichOneof("policy_choice")
        if choice == "latest":
            policy = VersionPolicy("latest", num_versions=entry.model_version_policy.latest.num_versions or 1)
        elif choice == "specific":
            policy = VersionPolicy("specific", versions=tuple(entry.model_version_policy.specific.versions))
        else:
            policy = VersionPolicy("all")
        base = Path(entry.base_path)
        models.append(ModelConfig(entry.name, base if base.is_absolute() else Path(path).parent / base, policy, dict(entry.version_labels)))
    return models
