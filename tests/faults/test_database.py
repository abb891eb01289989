"""The database refused and restored, under the real web app (gunicorn, gevent) on the real PostgreSQL, which
sits behind a TCP proxy the test cuts: what users of live and image analysis, the video API and the health
check see meanwhile, and that nothing is lost or half-written."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import stop, wait_until
from tests.faults.conftest import LiveStream, TcpProxy
from tests.videos.conftest import new_postgres_database
from tests.web.conftest import create_key, start_web, video_frames_as_jpeg

pytestmark = pytest.mark.slow  # gunicorn and the keys command

POSTGRES_PORT = 5432


@pytest.fixture(scope="module")
def media(shared_dir) -> dict[str, bytes]:
    videos = shared_dir / "media" / "videos"
    return {
        "frame": video_frames_as_jpeg(videos / "single_face.mp4")[0],
        "image": (shared_dir / "media" / "images" / "obama_small.jpg").read_bytes(),
        "video": (videos / "single_face.mp4").read_bytes(),
    }


def web_env(folder, database_url: str, **extra: str) -> dict[str, str]:
    return {
        "WEB_CONCURRENCY": "1",  # keys are remembered per process: one process makes that deterministic
        "EMOTION_DATABASE_URL": database_url,
        "EMOTION_BROKER_URL": f"sqla+sqlite:///{folder / 'queue.db'}",
        "EMOTION_STORAGE_DIR": str(folder / "storage"),
        **extra,
    }


def through(proxy: TcpProxy, url: str) -> str:
    return url.replace(f":{POSTGRES_PORT}/", f":{proxy.port}/")


def stored(folder) -> list[str]:
    return sorted(str(path.relative_to(folder / "storage")) for path in (folder / "storage").rglob("*") if path.is_file())


def test_the_web_app_starts_without_its_database_serves_analysis_and_catches_up_when_it_is_back(tmp_path, media):
    with new_postgres_database() as url:
        proxy = TcpProxy(POSTGRES_PORT)  # not listening: the database is down when the app starts
        web = start_web(tmp_path, "inprocess", **web_env(tmp_path, through(proxy, url), EMOTION_AUTH="off"))
        try:
            health = requests.get(f"{web.url}/api/v1/health", timeout=10)
            assert health.status_code == 503 and health.json()["down"] == ["database"]
            answer = requests.post(f"{web.url}/api/v1/analyze", data=media["image"], timeout=30)
            assert answer.status_code == 200 and len(answer.json()["faces"]) == 1
            stream = LiveStream(web.ws_url)
            assert len(stream.send(media["frame"])["faces"]) == 1
            stream.close()
            answer = requests.get(f"{web.url}/api/v1/videos", timeout=10)
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "database_unavailable"
            assert int(answer.headers["Retry-After"]) > 0
            answer = requests.post(f"{web.url}/api/v1/videos?filename=clip.mp4", data=media["video"], timeout=30)
            assert answer.status_code == 503 and stored(tmp_path) == []  # refused whole: no file kept

            proxy.restore()
            wait_until(lambda: requests.get(f"{web.url}/api/v1/health", timeout=10).status_code == 200, 60, "the schema upgrade")
            answer = requests.post(f"{web.url}/api/v1/videos?filename=clip.mp4", data=media["video"], timeout=30)
            assert answer.status_code == 202, answer.text
            assert [v["id"] for v in requests.get(f"{web.url}/api/v1/videos", timeout=10).json()["videos"]] == [answer.json()["id"]]
            assert web.process.poll() is None
        finally:
            stop(web.process)
            proxy.cut()


def test_a_database_outage_keeps_live_and_image_analysis_going_and_loses_nothing(tmp_path, media):
    with new_postgres_database() as url:
        proxy = TcpProxy(POSTGRES_PORT)
        proxy.restore()
        key = create_key("fault suite", {"EMOTION_DATABASE_URL": url})
        auth = {"Authorization": f"Bearer {key}"}
        web = start_web(tmp_path, "inprocess", **web_env(tmp_path, through(proxy, url), EMOTION_AUTH="required"))
        api = f"{web.url}/api/v1"
        stream = None
        try:
            first = requests.post(f"{api}/videos?filename=first.mp4", data=media["video"], headers=auth, timeout=30)
            assert first.status_code == 202
            assert requests.post(f"{api}/analyze", data=media["image"], headers=auth, timeout=30).status_code == 200
            stream = LiveStream(web.ws_url, auth)
            assert stream.send(media["frame"])["type"] == "result"
            files_before = stored(tmp_path)

            proxy.cut()
            # Live and image analysis go on: the open stream, a new one, and images, with the key checked before.
            assert len(stream.send(media["frame"])["faces"]) == 1
            other = LiveStream(web.ws_url, auth)
            assert len(other.send(media["frame"])["faces"]) == 1
            other.close()
            answer = requests.post(f"{api}/analyze", data=media["image"], headers=auth, timeout=30)
            assert answer.status_code == 200 and len(answer.json()["faces"]) == 1
            # What needs the database says so, as JSON; the public health check names it and nothing more.
            answer = requests.get(f"{api}/videos", headers=auth, timeout=10)
            assert answer.status_code == 503 and answer.json()["error"]["code"] == "database_unavailable"
            answer = requests.post(f"{api}/videos?filename=second.mp4", data=media["video"], headers=auth, timeout=30)
            assert answer.status_code == 503 and stored(tmp_path) == files_before
            health = requests.get(f"{api}/health", timeout=10)
            assert health.status_code == 503 and health.json() == {"status": "unavailable", "down": ["database"]}
            assert requests.get(f"{api}/health", headers=auth, timeout=10).json()["database"].startswith("down")

            proxy.restore()
            wait_until(lambda: requests.get(f"{api}/videos", headers=auth, timeout=10).status_code == 200, 30, "the database")
            listed = requests.get(f"{api}/videos", headers=auth, timeout=10).json()["videos"]
            assert [(v["id"], v["filename"], v["status"]) for v in listed] == [(first.json()["id"], "first.mp4", "queued")]
            assert requests.post(f"{api}/videos?filename=third.mp4", data=media["video"], headers=auth, timeout=30).status_code == 202
            assert len(stream.send(media["frame"])["faces"]) == 1  # the first stream never closed
            assert requests.get(f"{api}/health", timeout=10).json() == {"status": "ok"}
            assert "Traceback" not in web.log_path.read_text()
        finally:
            if stream is not None:
                stream.close()
            stop(web.process)
            proxy.cut()
