"""`models download` against a local HTTP server: verified files land, tampered ones never do."""

from __future__ import annotations

import functools
import http.server
import threading

import pytest

from emotion_detector.__main__ import main
from emotion_detector.models import YUNET, ChecksumMismatch, download


@pytest.fixture
def mirror(tmp_path, shared_dir):
    root = tmp_path / "mirror"
    root.mkdir()
    (root / "yunet.onnx").write_bytes((shared_dir / "models" / "yunet" / "face_detection_yunet.onnx").read_bytes())
    (root / "tampered.onnx").write_bytes(b"\0" * 1000)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_download_verifies_and_installs(mirror, tmp_path):
    path = download(YUNET, tmp_path / "models", url=f"{mirror}/yunet.onnx")
    assert path.name == YUNET.filename and path.stat().st_size == YUNET.size_bytes


def test_a_tampered_download_leaves_nothing_behind(mirror, tmp_path):
    with pytest.raises(ChecksumMismatch, match="does not match"):
        download(YUNET, tmp_path / "models", url=f"{mirror}/tampered.onnx")
    assert list((tmp_path / "models").iterdir()) == []


def test_cli(mirror, tmp_path, capsys):
    assert main(["models", "download", "--dest", str(tmp_path / "m"), "--url", f"{mirror}/yunet.onnx"]) == 0
    assert (tmp_path / "m" / YUNET.filename).is_file()
    assert main(["models", "download", "--dest", str(tmp_path / "m2"), "--url", f"{mirror}/tampered.onnx"]) == 1
    assert "download failed" in capsys.readouterr().err


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/yunet.onnx", "data:,x"])
def test_a_download_from_anything_but_http_is_refused_before_it_is_opened(tmp_path, url):
    with pytest.raises(ValueError, match="downloads come over https"):
        download(YUNET, tmp_path / "models", url=url)
    assert not (tmp_path / "models").exists()
