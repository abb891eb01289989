"""``pip install .`` from a clone, as CI checks it: the installed package runs without the checkout (console
script, shipped models, the web app's templates, static files and migrations), and installing leaves the
checkout as it was (pip builds in a copy, so no build/ or *.egg-info lands in it)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

SHIPPED_VERSIONS = sorted(f"{path.parent.parent.name} v{path.parent.name}" for path in (ROOT / "serving" / "models").glob("*/*/model.onnx"))

# Run by the installed interpreter from a directory that is not the checkout.
RENDER_INDEX = """
import json, sys
import emotion_detector, serving
from emotion_detector.web.app import create_app
from serving.server import model_configs, parse_args

app = create_app({"detector": "haar"})  # migrates the SQLite database in EMOTION_INSTANCE_DIR on the way
client = app.test_client()
index, style = client.get("/"), client.get("/static/style.css")
print(json.dumps({
    "modules": [emotion_detector.__file__, serving.__file__],
    "index": [index.status_code, index.get_data(as_text=True)],
    "style": [style.status_code, len(style.data)],
    "videos": client.get("/api/v1/videos").status_code,
    "served": {config.name: str(config.base_path) for config in model_configs(parse_args([]))},
}))
"""


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout


def copy_of_the_clone(destination: Path) -> Path:
    """The files a clone would have: tracked ones, and new ones not yet committed (not the ignored ones)."""
    for name in git("ls-files", "-z", "--cached", "--others", "--exclude-standard").split("\0"):
        source = ROOT / name
        if name and source.is_file():  # a tracked file deleted in the working tree is not copied
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def venv_seeing_our_dependencies(path: Path) -> Path:
    """A fresh venv whose own site-packages comes first and which sees the running interpreter's installed
    packages after it (a .pth file): the dependencies and setuptools without downloading anything."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    own = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], capture_output=True, text=True, check=True
        ).stdout.strip()
    )
    ours = [entry for entry in sys.path if Path(entry).name == "site-packages" and Path(entry).is_dir()]
    assert ours, f"no site-packages on {sys.path}"
    (own / "project-dependencies.pth").write_text("\n".join(ours) + "\n")
    return python


@pytest.mark.slow
def test_pip_install_from_a_clone_runs_outside_the_checkout(tmp_path, shared_dir):
    status_before = git("status", "--porcelain")
    clone = copy_of_the_clone(tmp_path / "clone")
    venv = tmp_path / "venv"
    python = venv_seeing_our_dependencies(venv)
    # --ignore-installed: never touch a copy of the package the outer environment may have.
    # -v: the build backend's own output, where setuptools writes its warnings.
    install = [python, "-m", "pip", "install", "-v", "--no-deps", "--no-build-isolation", "--ignore-installed", str(clone)]
    installed = subprocess.run(install, capture_output=True, text=True, cwd=tmp_path)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # E.g. "BuildBackendWarning: Package 'emotion_detector.web.static' is absent from the `packages` configuration".
    warnings = sorted(
        {line.strip() for line in (installed.stdout + installed.stderr).splitlines() if re.search(r"\b[A-Z]\w*Warning\b", line)}
    )
    assert warnings == [], "\n".join(warnings)

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("EMOTION_", "PYTHON"))}
    environment |= {"EMOTION_INSTANCE_DIR": str(tmp_path / "instance"), "EMOTION_MODEL_CACHE_DIR": str(tmp_path / "models")}

    def run(*command: str | Path) -> str:
        done = subprocess.run(command, capture_output=True, text=True, cwd=elsewhere, env=environment, timeout=300)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"
        return done.stdout

    usage = run(venv / "bin" / "emotion-detector", "--help")
    assert usage.startswith("usage: emotion-detector") and "{run,models,analyze,keys,edge,forward}" in usage, usage
    assert {"download", "list"} <= set(run(venv / "bin" / "emotion-detector", "models", "--help").split())

    shipped = [line for line in run(venv / "bin" / "emotion-detector", "models", "list").splitlines() if ": shipped -> " in line]
    assert sorted(line.split(":")[0] for line in shipped) == SHIPPED_VERSIONS
    for line in shipped:
        assert line.endswith("[present]"), line  # model.onnx, model.json and MODEL_CARD.md each
        assert line.split(" -> ")[1].startswith(str(venv)), line

    answer = json.loads(run(python, "-c", RENDER_INDEX))
    assert all(module.startswith(str(venv)) for module in answer["modules"]), answer["modules"]
    status, page = answer["index"]
    assert status == 200 and "/static/live.js" in page, page[:500]
    assert answer["style"][0] == 200 and answer["style"][1] > 0
    assert answer["videos"] == 200  # the database was migrated by the installed migrations
    assert (tmp_path / "instance" / "emotion-detector.db").is_file()
    # `python -m serving` without --model_base_path (as in serving/Dockerfile) serves the installed models.
    assert sorted(answer["served"]) == sorted({version.split()[0] for version in SHIPPED_VERSIONS})
    assert all(path.startswith(str(venv)) for path in answer["served"].values()), answer["served"]

    # The command line on the installed models: an image and a video, faces found, tracks on the video.
    image, video = shared_dir / "media" / "images" / "two_people.jpg", shared_dir / "media" / "videos" / "single_face.mp4"
    records = [json.loads(line) for line in run(venv / "bin" / "emotion-detector", "analyze", image, video, "--every", "12").splitlines()]
    assert [(Path(r["source"]).name, r["frame"]) for r in records] == [("two_people.jpg", 0)] + [
        ("single_face.mp4", f) for f in range(0, 72, 12)
    ]
    assert len(records[0]["faces"]) == 2 and all(len(r["faces"]) == 1 and r["faces"][0]["id"] == 1 for r in records[1:])

    assert git("status", "--porcelain") == status_before  # nothing written into the checkout
