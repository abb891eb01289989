"""``make run`` (``python -m emotion_detector run``): the Procfile's processes under supervisord; one that dies
is restarted while the others keep running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import requests

from emotion_detector.__main__ import main
from emotion_detector.local_run import read_procfile, supervisord_config
from tests.conftest import ROOT, YUNET, free_port, wait_until


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
