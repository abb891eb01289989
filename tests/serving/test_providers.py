"""Where the models run: the GPU when ONNX Runtime has one, the CPU otherwise, and what really runs each session
(ONNX Runtime falls back to the CPU on its own when the GPU provider cannot start)."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from serving import providers
from serving.providers import CPU, CUDA, ExecutionProviderMissing, execution_providers, inference_session, provider_in_use
from serving.registry import ModelRegistry, ServingOptions, discover
from tests.serving.test_registry import write_scale_model


@pytest.fixture
def cuda_wheel(monkeypatch):
    """ONNX Runtime as the onnxruntime-gpu wheel describes itself on a machine without a usable GPU."""
    monkeypatch.setattr(providers.ort, "get_available_providers", lambda: [CUDA, CPU])


def test_the_cpu_alone_where_onnx_runtime_has_no_gpu():
    assert CUDA not in ort.get_available_providers()  # this machine's wheel: the CPU one
    assert execution_providers("auto") == [CPU] and execution_providers("cpu") == [CPU]
    with pytest.raises(ExecutionProviderMissing, match="install the gpu extra"):
        execution_providers("cuda")


def test_the_gpu_first_where_onnx_runtime_has_one(cuda_wheel):
    assert execution_providers("auto") == [CUDA, CPU]
    assert execution_providers("cpu") == [CPU]  # asked for: the GPU is left alone


def test_a_session_says_it_runs_on_the_cpu_when_the_gpu_provider_falls_back(cuda_wheel, tmp_path):
    write_scale_model(tmp_path / "scale" / "1", 2.0)
    model = str(tmp_path / "scale" / "1" / "model.onnx")
    with pytest.warns(UserWarning, match="CUDAExecutionProvider"):  # ONNX Runtime's own word on the fallback
        session = inference_session(model, ort.SessionOptions(), "auto")
    assert provider_in_use(session) == "cpu"
    with pytest.warns(UserWarning), pytest.raises(ExecutionProviderMissing, match="no GPU answered"):
        inference_session(model, ort.SessionOptions(), "cuda")


def test_the_model_server_states_where_each_model_runs(tmp_path):
    write_scale_model(tmp_path / "scale" / "1", 2.0)
    registry = ModelRegistry(discover(tmp_path), ServingOptions(intra_op_threads=1, execution_provider="cpu"))
    registry.refresh()
    model = registry.resolve("scale")
    assert model.execution_provider == "cpu" and model.metadata["execution_provider"] == "cpu"
