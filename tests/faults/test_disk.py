"""A full disk under the real web app (gunicorn): uploads go to a 4 MiB tmpfs. The user is told the storage
is full (507 storage_full), nothing half-written stays, what was stored before is intact, and uploads work
again as soon as there is room."""

from __future__ import annotations

import os
import shutil

import pytest
import requests

from tests.conftest import stop
from tests.faults.conftest import small_filesystem
from tests.web.conftest import start_web

pytestmark = pytest.mark.slow  # gunicorn, and mount


def test_a_full_disk_refuses_an_upload_with_507_and_keeps_what_was_stored(tmp_path, shared_dir):
    video = (shared_dir / "media" / "videos" / "single_face.mp4").read_bytes()
    with small_filesystem(tmp_path / "storage", size_mib=4) as storage:
        env = {
            "WEB_CONCURRENCY": "1",
            "EMOTION_DATABASE_URL": f"sqlite:///{tmp_path / 'videos.db'}",  # the database has room: only the uploads' disk fills
            "EMOTION_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'queue.db'}",
            "EMOTION_STORAGE_DIR": str(storage),
        }
        web = start_web(tmp_path, "inprocess", **env)
        api = f"{web.url}/api/v1/videos"
        try:
            first = requests.post(f"{api}?filename=first.mp4", data=video, timeout=30)
            assert first.status_code == 202
            free_bytes = shutil.disk_usage(storage).free

            answer = requests.post(f"{api}?filename=big.mp4", data=os.urandom(6 * 1024 * 1024), timeout=60)
            assert answer.status_code == 507, answer.text[:300]
            error = answer.json()["error"]
            assert error["code"] == "storage_full"
            assert error["message"].startswith("the server's storage is full: the upload was not stored")
            # Nothing of it stays; the room it took is free again.
            assert sorted(path.name for path in storage.rglob("*") if path.is_file()) == ["source.mp4"]
            assert shutil.disk_usage(storage).free == free_bytes
            assert (storage / first.json()["id"] / "source.mp4").read_bytes() == video

            second = requests.post(f"{api}?filename=second.mp4", data=video, timeout=30)
            assert second.status_code == 202
            listed = {v["filename"]: v["status"] for v in requests.get(api, timeout=10).json()["videos"]}
            assert listed == {"first.mp4": "queued", "second.mp4": "queued"}
            assert "storage" in web.log_path.read_text() and "Traceback" not in web.log_path.read_text()
        finally:
            stop(web.process)
