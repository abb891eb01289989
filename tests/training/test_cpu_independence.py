"""Every shipped model gives the same results on an AVX2-only x86-64 CPU as on this one (DESIGN.md §3).

ONNX Runtime picks its int8 kernels by CPU: without AVX-512 VNNI the u8s8 ones add products in int16 and can
overflow. QEMU's user-mode emulator runs this same Python and ONNX Runtime on an emulated AVX2-only CPU
(Haswell), and the outputs are compared with a native run on real held-out faces.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import SHIPPED_MODELS
from training.evaluate import _read_rgb, _split_args, _utk_test_set, latest, shipped_versions

pytestmark = pytest.mark.slow

EMULATED_CPU = "Haswell"  # AVX2 without any AVX-512: the path the 2013-2017 Intel and the pre-Zen 4 AMD CPUs take
FACES = {"emotion": 96, "age": 32, "gender": 32, "age_gender": 64}  # emulation is ~100x slower: about 50 s in all
# The newest (served) version of every model, and the earlier emotion versions (all still served by number).
VERSIONS = {name: [latest(SHIPPED_MODELS, name).version] for name in FACES} | {
    "emotion": [model.version for model in shipped_versions(SHIPPED_MODELS, "emotion")]
}

# Run under the emulator: ONNX Runtime only (fewer imports to emulate), one thread like a small server.
# argv: faces.npz (inputs by model name), results.npz, models dir, then NAME/VERSION per model to run.
RUN_MODELS = """
import sys, numpy as np, onnxruntime as ort
inputs, results = np.load(sys.argv[1]), {}
options = ort.SessionOptions()
options.intra_op_num_threads = 1
for model in sys.argv[4:]:
    name = model.split("/")[0]
    session = ort.InferenceSession(f"{sys.argv[3]}/{model}/model.onnx", options, providers=["CPUExecutionProvider"])
    for output, value in zip(session.get_outputs(), session.run(None, {"image": inputs[name]})):
        results[f"{model}/{output.name}"] = value
np.savez(sys.argv[2], **results)
"""


@pytest.fixture(scope="module")
def qemu() -> str:
    found = shutil.which("qemu-x86_64")
    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("compares x86-64 CPUs; this machine is not one")
    if found is None and os.environ.get("CI"):
        pytest.fail("qemu-x86_64 is not installed (apt-get install qemu-user)")  # CI must run this check
    if found is None:
        pytest.skip("qemu-x86_64 is not installed (apt-get install qemu-user)")
    return found


def held_out_faces(shared_dir) -> dict[str, np.ndarray]:
    """Normalised NHWC faces from each model's held-out set (FER2013 PublicTest, the UTKFace test split)."""
    fer = np.load(shared_dir / "data" / "fer2013" / "fer2013.npz")
    grey = fer["X"][fer["usage"] == 1][: FACES["emotion"], ..., None]
    paths, _, _ = _utk_test_set(*_split_args())
    rgb = _read_rgb(paths[: max(FACES[n] for n in ("age", "gender", "age_gender"))], 64)
    faces = {}
    for name, count in FACES.items():
        pixels = grey if name == "emotion" else rgb[:count]
        checked = [model for model in shipped_versions(SHIPPED_MODELS, name) if model.version in VERSIONS[name]]
        preprocessing = {json.dumps({key: model.metadata["input"][key] for key in ("shape", "normalization")}) for model in checked}
        assert len(preprocessing) == 1, f"{name}: the versions checked preprocess differently, {preprocessing}"
        described = json.loads(preprocessing.pop())
        norm = described["normalization"]
        assert pixels.shape[1:] == tuple(described["shape"][1:]), name
        faces[name] = ((pixels.astype(np.float32) / 255 - norm["mean"]) / norm["std"]).astype(np.float32)
    return faces


def run_models(prefix: list[str], inputs_path, outputs_path) -> dict[str, np.ndarray]:
    models = [f"{name}/{version}" for name, versions in VERSIONS.items() for version in versions]
    command = [*prefix, sys.executable, "-c", RUN_MODELS, str(inputs_path), str(outputs_path), str(SHIPPED_MODELS), *models]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    with np.load(outputs_path) as outputs:
        return {key: outputs[key] for key in outputs.files}


def test_the_shipped_models_give_the_same_results_on_an_avx2_only_cpu(shared_dir, qemu, tmp_path):
    np.savez(tmp_path / "faces.npz", **held_out_faces(shared_dir))
    native = run_models([], tmp_path / "faces.npz", tmp_path / "native.npz")
    emulated = run_models([qemu, "-cpu", EMULATED_CPU], tmp_path / "faces.npz", tmp_path / "emulated.npz")
    outputs = {"emotion": ["probabilities"], "age": ["years"], "gender": ["probabilities"], "age_gender": ["age", "gender"]}
    expected = {f"{name}/{version}/{output}" for name, versions in VERSIONS.items() for version in versions for output in outputs[name]}
    assert native.keys() == emulated.keys() == expected
    failures = []
    for key, here in native.items():
        there = emulated[key]
        worst = float(np.abs(here - there).max())
        if here.ndim == 2:  # probabilities: the same label for every face, and at most float rounding apart
            changed = int((here.argmax(axis=1) != there.argmax(axis=1)).sum())
            if changed or worst > 1e-4:
                failures.append(f"{key}: {changed} of {len(here)} top labels differ, probabilities up to {worst:.3g} apart")
        elif worst > 1e-3:
            failures.append(f"{key}: ages up to {worst:.3g} years apart over {len(here)} faces")
    assert not failures, "AVX2-only CPU (emulated) vs this CPU:\n" + "\n".join(failures)
