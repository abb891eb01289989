"""Optional third-party model files, fetched on request (never at run time) and verified by checksum.

python -m emotion_detector models download            # YuNet into ~/.cache/emotion-detector/models/
python -m emotion_detector models list
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit


@dataclass(frozen=True)
class ModelFile:
    name: str
    filename: str
    url: str
    sha256: str
    size_bytes: int
    licence: str


YUNET = ModelFile(
    name="yunet",
    filename="face_detection_yunet_2026may.onnx",
    url="https://media.githubusercontent.com/media/opencv/opencv_zoo/main/models/face_detection_yunet/face_detection_yunet_2026may.onnx",
    sha256="ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0",
    size_bytes=229_738,
    licence="MIT (OpenCV Zoo)",
)
MODEL_FILES = {YUNET.name: YUNET}


class ChecksumMismatch(RuntimeError):
    pass


def download(model: ModelFile, destination: Path, url: str | None = None, timeout_s: float = 60) -> Path:
    """Download to a temporary file beside the target, check size and SHA-256, then rename into place:
    a failed or tampered download never leaves a file that the app would load."""
    source = url or model.url
    if urlsplit(source).scheme not in ("https", "http"):  # never file:// or a custom scheme; the checksum guards the bytes
        raise ValueError(f"{model.filename}: downloads come over https (or http for a local mirror), not {source!r}")
    destination.mkdir(parents=True, exist_ok=True)
    target = destination / model.filename
    digest = hashlib.sha256()
    handle, temporary = tempfile.mkstemp(dir=destination, prefix=f".{model.filename}.", suffix=".part")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(source, timeout=timeout_s) as response:  # nosec B310  # scheme checked
            received = 0
            while chunk := response.read(64 * 1024):
                received += len(chunk)
                if received > model.size_bytes * 2:
                    raise ChecksumMismatch(f"{model.filename}: more than {model.size_bytes * 2} bytes; expected {model.size_bytes}")
                digest.update(chunk)
                out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise ChecksumMismatch(f"{model.filename}: SHA-256 {digest.hexdigest()} does not match the pinned {model.sha256}")
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return target
