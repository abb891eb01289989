"""Where ONNX Runtime runs a model: on an NVIDIA GPU when this ONNX Runtime can (the ``onnxruntime-gpu`` wheel,
installed by the ``gpu`` extra) and one answers, else on the CPU. The face detector, the in-process models and
the model server all ask here, so one setting moves them together."""

from __future__ import annotations

import functools
import logging
from typing import Literal

import onnxruntime as ort

log = logging.getLogger(__name__)

ExecutionPreference = Literal["auto", "cpu", "cuda"]
EXECUTION_PREFERENCES: tuple[ExecutionPreference, ...] = ("auto", "cpu", "cuda")
CPU, CUDA = "CPUExecutionProvider", "CUDAExecutionProvider"


class ExecutionProviderMissing(RuntimeError):
    """``cuda`` was asked for and this ONNX Runtime cannot run on a GPU."""


def execution_providers(preference: ExecutionPreference = "auto") -> list[str]:
    """The providers to create a session with, in order of preference (the CPU always last: ONNX Runtime runs
    there what the GPU provider cannot)."""
    if preference == "cpu":
        return [CPU]
    if CUDA in ort.get_available_providers():
        _load_cuda_libraries()
        return [CUDA, CPU]
    if preference == "cuda":
        raise ExecutionProviderMissing(
            f"execution provider 'cuda' asked for, but this ONNX Runtime has only {ort.get_available_providers()}:"
            " install the gpu extra (onnxruntime-gpu) in place of onnxruntime, or ask for 'auto'"
        )
    return [CPU]


@functools.cache
def _load_cuda_libraries() -> None:
    """CUDA and cuDNN from the nvidia-* wheels that the gpu extra installs (the system's own are found anyway)."""
    try:
        ort.preload_dlls()
    except Exception as error:  # none installed as wheels: ONNX Runtime looks on the library path instead
        log.info("CUDA libraries not preloaded from wheels (%s: %s)", type(error).__name__, error)


def provider_in_use(session: ort.InferenceSession) -> Literal["cuda", "cpu"]:
    """What really runs the session: ONNX Runtime falls back to the CPU when the CUDA provider is installed
    but no GPU or driver answers, and says so only here."""
    return "cuda" if session.get_providers()[0] == CUDA else "cpu"


def inference_session(model: str | bytes, options: ort.SessionOptions, preference: ExecutionPreference = "auto") -> ort.InferenceSession:
    session = ort.InferenceSession(model, options, providers=execution_providers(preference))
    if preference == "cuda" and provider_in_use(session) != "cuda":
        raise ExecutionProviderMissing("execution provider 'cuda' asked for, but no GPU answered (ONNX Runtime fell back to the CPU)")
    return session
