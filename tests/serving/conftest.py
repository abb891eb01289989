from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

# Installed once per machine, outside the checkout (tests never write into it).
OFFICIAL_CLIENT_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "emotion-detector" / "tfs-official-client"


@pytest.fixture(scope="session")
def official_client() -> callable:
    """Runs tests/serving/official_client.py in its own process with the official TF Serving protos."""
    requirements = Path(__file__).parent / "official_client_requirements.txt"
    marker = OFFICIAL_CLIENT_DIR / "installed.txt"
    if not marker.exists() or marker.read_text() != requirements.read_text():
        OFFICIAL_CLIENT_DIR.mkdir(parents=True, exist_ok=True)
        for line in requirements.read_text().splitlines():
            if line and not line.startswith("#"):
                package = line.split("#")[0].strip()
                target = OFFICIAL_CLIENT_DIR / package.split("==")[0]
                subprocess.run(
                    [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--upgrade", "--target", str(target), package], check=True
                )
        marker.write_text(requirements.read_text())
    # tensorflow-serving-api's tensorflow_serving package must win over min-tfs-client's older copy
    path = os.pathsep.join(str(OFFICIAL_CLIENT_DIR / name) for name in ("tensorflow-serving-api", "min-tfs-client"))
    env = {**os.environ, "PYTHONPATH": path, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}

    def run(target: str, calls: list[dict]) -> list[dict]:
        done = subprocess.run(
            [sys.executable, str(Path(__file__).parent / "official_client.py")],
            input=json.dumps({"target": target, "calls": calls}),
            capture_output=True,
            text=True,
            env=env,
            cwd="/",  # keep the project (and its serving/protocol/protos) off the client's import path
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"official client failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout)

    return run


@pytest.fixture(scope="session")
def fer_faces(shared_dir) -> np.ndarray:
    """Eight real faces from FER2013 PublicTest, preprocessed as the emotion model's metadata says."""
    archive = np.load(shared_dir / "data" / "fer2013" / "fer2013.npz")
    faces = archive["X"][archive["usage"] == 1][:8]
    return ((faces.astype(np.float32) / 255 - 0.5) / 0.5)[..., None]


@pytest.fixture(scope="session")
def utk_faces(shared_dir) -> np.ndarray:
    """Eight real UTKFace faces as 64x64 RGB, normalised for the age / gender models."""
    import cv2

    files = sorted((shared_dir / "data" / "utkface" / "images").glob("*.jpg"))[::2500][:8]
    images = [cv2.cvtColor(cv2.resize(cv2.imread(str(f)), (64, 64), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB) for f in files]
    return (np.stack(images).astype(np.float32) / 255 - 0.5) / 0.5
