"""The face models behind one interface: in this process (ONNX Runtime on the shipped model files) or on the
model server over gRPC (``ModelServerClient``), with the same heads, label orders and answers.

    models = create_models(settings)          # EMOTION_MODEL_SERVER=inprocess (or empty): in this process
    specs = models.specs()                    # {model name: ModelSpec}: input size, channels, crop rules
    outputs = models.predict({"emotion": batch, "age_gender": batch})   # {head: array}

Callers ask for *heads* (``emotion``, ``age``, ``gender``); both implementations prefer the combined
``age_gender`` model (one forward pass for both heads) and fall back to the separate ``age`` and ``gender``
models, in the order of ``model_client.MODEL_CHOICES``. The in-process models are loaded by the model
server's own registry (``serving/registry.py``) and described by the same ``model.json`` parsing
(``ModelSpec.from_metadata``), so the two cannot drift apart.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from emotion_detector.model_client import MODEL_CHOICES, ModelServerClient, ModelServerError, ModelUnavailable
from emotion_detector.settings import Settings
from serving import SHIPPED_MODELS
from serving.protocol.model_info import ModelSpec

if TYPE_CHECKING:
    from serving.providers import ExecutionPreference  # onnxruntime is imported only where models run here

IN_PROCESS = "inprocess"  # EMOTION_MODEL_SERVER value (as is the empty string) for models in this process


class PendingOutputs(Protocol):
    def result(self) -> dict[str, np.ndarray]:
        """{head: output array}; waits for the answers (raises ModelUnavailable / ModelServerError)."""
        ...


@runtime_checkable
class FaceModels(Protocol):
    """What the pipeline needs from the emotion, age and gender models, wherever they run."""

    def specs(self) -> dict[str, ModelSpec]:
        """{model name: spec} of the models in use: the first complete set of ``MODEL_CHOICES``."""
        ...

    def labels(self, head: str) -> tuple[str, ...]:
        """A head's class names in output order, as its model.json states them."""
        ...

    def uncertain_below(self, head: str) -> float:
        """The top probability under which a head's label is shown as uncertain (0: its model has none)."""
        ...

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """{model name: normalised batch} → {head: output array}."""
        ...

    def submit(self, inputs: dict[str, np.ndarray]) -> PendingOutputs:
        """Start ``predict`` and return at once; ``.result()`` waits for it."""
        ...

    def check(self) -> None:
        """Raise ModelUnavailable unless the models can answer now."""
        ...

    def close(self) -> None: ...


class InProcessModels:
    """The shipped models on ONNX Runtime in this process: the highest version of each, loaded at once (a
    broken or missing model fails here, not on the first face)."""

    def __init__(
        self,
        models_dir: Path = SHIPPED_MODELS,
        intra_op_threads: int | None = None,
        max_batch_size: int = 256,
        execution_provider: ExecutionPreference = "auto",
    ):
        # The model server's own loader: the same sessions, options, input checks and model.json.
        from serving.registry import ModelRegistry, ServingOptions, VersionPolicy, discover

        self.target = f"in-process models from {models_dir}"
        available = {config.name: config for config in discover(Path(models_dir))} if Path(models_dir).is_dir() else {}
        choice = next((names for names in MODEL_CHOICES if all(name in available for name in names)), None)
        if choice is None:
            raise ModelServerError(f"{models_dir} holds none of the model sets {MODEL_CHOICES} (found: {sorted(available)})")
        latest = VersionPolicy("latest", num_versions=1)
        threads = intra_op_threads or min(2, os.cpu_count() or 1)
        options = ServingOptions(intra_op_threads=threads, max_batch_size=max_batch_size, execution_provider=execution_provider)
        self._registry = ModelRegistry([replace(available[name], policy=latest) for name in choice], options)
        self._registry.refresh()
        failed = [f"{name} v{state.version}: {state.error}" for name in choice for state in self._registry.status(name) if state.error]
        if not self._registry.ready:
            raise ModelServerError(f"cannot load the models in {models_dir}: {'; '.join(failed) or 'no version found'}")
        self._models = {name: self._registry.resolve(name) for name in choice}
        self._specs = {name: ModelSpec.from_metadata(name, model.version, model.metadata) for name, model in self._models.items()}
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()

    def specs(self) -> dict[str, ModelSpec]:
        return self._specs

    def labels(self, head: str) -> tuple[str, ...]:
        for spec in self._specs.values():
            labels = spec.outputs[head].labels if head in spec.outputs else None
            if labels is not None:
                return labels
        raise ModelServerError(f"no model of the {self.target} states labels for {head!r}")

    def uncertain_below(self, head: str) -> float:
        return next((spec.outputs[head].uncertain_below for spec in self._specs.values() if head in spec.outputs), 0.0)

    def predict(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from serving.protocol.errors import ServingError

        outputs: dict[str, np.ndarray] = {}
        for name, batch in inputs.items():
            spec = self._specs.get(name)
            if spec is None:
                raise ModelServerError(f"model {name!r} is not in use here; the models are {sorted(self._specs)}")
            try:
                answered = self._models[name].predict({spec.input_name: batch})
            except ServingError as error:  # the same checks, and the same kind of error, as on the model server
                raise ModelServerError(f"model error for {name} ({error.code.name}): {error.message}") from error
            outputs |= {head: answered[output.tensor] for head, output in spec.outputs.items()}
        return outputs

    def submit(self, inputs: dict[str, np.ndarray]) -> Future[dict[str, np.ndarray]]:
        # One thread: ONNX Runtime releases the GIL, so a video segment decodes and detects its next batch
        # meanwhile, as it does while the model server works.
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="face-models")
            return self._pool.submit(self.predict, inputs)

    def check(self) -> None:
        if not self._registry.ready:
            raise ModelUnavailable(f"the {self.target} are not loaded")

    def close(self) -> None:
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def create_models(settings: Settings, timeout_s: float | None = None) -> FaceModels:
    """The models that ``settings.model_server`` names: ``inprocess`` (or empty) for ONNX Runtime in this
    process, else the model server's gRPC address. ``timeout_s`` overrides the model server's per-call
    timeout (a video worker waits longer than a live frame may)."""
    if settings.model_server.strip().lower() in ("", IN_PROCESS):
        return InProcessModels(execution_provider=settings.execution_provider)
    return ModelServerClient(settings.model_server, timeout_s or settings.model_server_timeout_s, tls=settings.model_server_tls)
