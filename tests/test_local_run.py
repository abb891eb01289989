"""``make run`` (``python -m emotion_detector run``): the Procfile's processes under supervisord; one that dies
is restarted while the others keep running."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from emotion_detector.__main__ import main
from emotion_detector.local_run import read_procfile, supervisord_config
from tests.conftest import ROOT, YUNET, free_port, wait_until
from tests.test_install import copy_of_the_clone, venv_seeing_our_dependencies


def test_every_procfile_line_becomes_a_restarted_program(tmp_path):
    processes = read_procfile(ROOT / "Procfile")
    config = supervisord_config(processes, tmp_path, ROOT)
    for name, command in processes.items():
        assert f"[program:{name}]" in config
        assert f"command=/bin/sh -c 'exec {command.replace('%', '%%')}'" in config
    assert config.count("autorestart=true") == len(processes)
    assert str(tmp_path / "supervisord.log") in config
    assert config.count(f"directory={ROOT}\n") == len(processes)


@pytest.mark.parametrize("line", ["web", "web:", ": gunicorn", "two words: x"])
def test_a_malformed_procfile_line_is_refused_with_its_line_number(tmp_path, line):
    procfile = tmp_path / "Procfile"
    procfile.write_text(f"model: python -m serving\n{line}\n")
    with pytest.raises(ValueError, match=r"Procfile:2: expected 'name: command'"):
        read_procfile(procfile)


def test_run_outside_a_checkout_asks_for_a_procfile(tmp_path, capsys):
    assert main(["run", "--procfile", str(tmp_path / "Procfile"), "--state-dir", str(tmp_path / "state")]) == 2
    assert f"no Procfile at {tmp_path / 'Procfile'}" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def pids_of(pattern: str) -> list[int]:
    found = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found]


@pytest.mark.slow
def test_a_process_that_dies_is_restarted_and_the_others_keep_running(tmp_path):
    web_port, grpc_port, rest_port = free_port(), free_port(), free_port()
    environment = {
        **os.environ,
        "PORT": str(web_port),
        "MODEL_GRPC_PORT": str(grpc_port),
        "MODEL_REST_PORT": str(rest_port),
        "WEB_CONCURRENCY": "1",
        "EMOTION_MODEL_SERVER": f"127.0.0.1:{grpc_port}",
        "EMOTION_YUNET_PATH": str(YUNET),
        "EMOTION_DATABASE_URL": f"sqlite:///{tmp_path / 'jobs.db'}",
        "EMOTION_BROKER_URL": f"sqla+sqlite:///{tmp_path / 'queue.db'}",
        "EMOTION_STORAGE_DIR": str(tmp_path / "videos"),
    }
    log = open(tmp_path / "run.log", "w")  # noqa: SIM115 - closed below
    runner = subprocess.Popen(
        [sys.executable, "-m", "emotion_detector", "run", "--state-dir", str(tmp_path / "state")],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    health = f"http://127.0.0.1:{web_port}/api/v1/health"
    try:
        wait_until(lambda: requests.get(health, timeout=2).ok, 90, "every process", runner)
        model = pids_of(f"serving --port {grpc_port}")
        web = pids_of(f"gunicorn.*{web_port}") or pids_of("gunicorn -c gunicorn.conf.py")
        assert len(model) == 1, model
        os.kill(model[0], signal.SIGKILL)
        wait_until(lambda: (restarted := pids_of(f"serving --port {grpc_port}")) and restarted != model, 20, "a new model server")
        wait_until(lambda: requests.get(health, timeout=2).ok, 30, "the restarted model server to serve")
        assert runner.poll() is None and all(pid in pids_of("gunicorn") for pid in web)  # the web app never stopped
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=20)
        except subprocess.TimeoutExpired:
            runner.kill()
        log.close()
        time.sleep(0.5)
    assert not pids_of(f"serving --port {grpc_port}"), "supervisord left the model server running"


@pytest.mark.slow
def test_make_run_says_where_it_is_once_up_shares_its_data_with_the_commands_and_stops_quietly(tmp_path):
    """`make run` in a clone, as a person runs it: the Makefile's own recipe installs the checkout into .venv
    (offline here: every requirement is already installed), the terminal shows the address and next steps once
    the app answers, the README's `.venv/bin/emotion-detector keys create` makes a key the running app accepts
    (one data home, from any directory), and Ctrl-C stops everything without an ERROR. The terminal shows no
    empty "Listening at:", no migration lines, and gunicorn leaves no control socket in the home directory."""
    clone = copy_of_the_clone(tmp_path / "clone")
    venv_seeing_our_dependencies(clone / ".venv")
    pip = clone / ".venv" / "bin" / "pip"  # the venv has none of its own: the outer environment's, run by it
    pip.write_text('#!/bin/sh\nexec "$(dirname "$0")/python" -m pip "$@"\n')
    pip.chmod(0o755)
    web_port, grpc_port, rest_port = free_port(), free_port(), free_port()
    home, elsewhere = tmp_path / "home", tmp_path / "elsewhere"
    elsewhere.mkdir()
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("EMOTION_", "PYTHON", "XDG_"))}
    environment |= {
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}:{environment['PATH']}",  # gunicorn and celery, as .venv would have them
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip's spelling of --no-build-isolation: setuptools is installed
        "PORT": str(web_port),
        "MODEL_GRPC_PORT": str(grpc_port),
        "MODEL_REST_PORT": str(rest_port),
        "EMOTION_MODEL_SERVER": f"127.0.0.1:{grpc_port}",
        "EMOTION_AUTH": "required",
        "WEB_CONCURRENCY": "1",
    }
    lines: list[str] = []
    # A session of its own, as a terminal's foreground job: Ctrl-C signals its whole process group.
    make = subprocess.Popen(
        ["make", "run"], cwd=clone, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    reader = threading.Thread(target=lambda: lines.extend(make.stdout), daemon=True)
    reader.start()
    try:
        wait_until(lambda: any(line.startswith("Emotion Detector is up") for line in lines), 180, "make run's banner", make)
        banner = "".join(lines[next(i for i, line in enumerate(lines) if line.startswith("Emotion Detector is up")) :][:7])
        assert f"Emotion Detector is up: http://localhost:{web_port}" in banner
        assert f"data       {clone / 'instance'}" in banner
        assert "keys create NAME" in banner and ".venv/bin/emotion-detector" in banner

        # The README's command, verbatim, from the checkout; and the same console script from another directory.
        made = subprocess.run(
            '.venv/bin/emotion-detector keys create "me"', shell=True, cwd=clone, env=environment, capture_output=True, text=True
        )
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip()
        answer = requests.get(f"http://127.0.0.1:{web_port}/api/v1/videos", headers={"Authorization": f"Bearer {key}"}, timeout=10)
        assert answer.status_code == 200, answer.text  # the running app knows the key: one database
        listed = subprocess.run(
            [clone / ".venv" / "bin" / "emotion-detector", "keys", "list"], cwd=elsewhere, env=environment, capture_output=True, text=True
        )
        assert listed.returncode == 0 and "  me  " in listed.stdout, listed.stdout + listed.stderr
    finally:
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C
        try:
            make.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(make.pid, signal.SIGKILL)
            make.wait()
        reader.join(10)
    output = "".join(lines)
    assert sum(line.startswith("Emotion Detector is up") for line in lines) == 1
    assert f"Listening at: http://127.0.0.1:{web_port}" in output
    assert not re.search(r"Listening at:\s*(\(|$)", output, re.MULTILINE), output
    for noise in ("Running upgrade", "setup plugin", "Context impl", "Control socket", "ERROR", "CRIT", "Traceback"):
        assert noise not in output, f"{noise!r} in:\n{output}"
    assert "stopped: web (exit status 0)" in output and "stopped: worker (exit status 0)" in output
    assert not pids_of(f"serving --port {grpc_port}"), "a process outlived make run"
    assert (clone / "instance" / "emotion-detector.db").is_file()
    assert not (home / ".gunicorn").exists() and not (home / ".local" / "share" / "emotion-detector").exists()
