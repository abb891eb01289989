"""Every process that opens the database brings its schema up to date at start (web workers, video
workers): on a fresh database they race, and all of them must come up."""

from __future__ import annotations

import subprocess
import sys

import pytest
from sqlalchemy import create_engine, inspect

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # processes racing to migrate one database

MIGRATE = "import sys; from emotion_detector.videos.db import migrate; migrate(sys.argv[1])"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_migrating_a_fresh_database_at_once_all_succeed(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'videos.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_database")
    racers = [subprocess.Popen([sys.executable, "-c", MIGRATE, url], cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    failures = [racer.stderr.read().strip().splitlines()[-3:] for racer in racers if racer.wait(timeout=120)]
    assert failures == []
    assert {"videos", "segments", "observations", "people"} <= set(inspect(create_engine(url)).get_table_names())
