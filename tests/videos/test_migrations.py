"""Every process that opens the database brings its schema up to date at start (web workers, video
workers): on a fresh database they race, and all of them must come up."""

from __future__ import annotations

import contextlib
import subprocess
import sys

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect, text

from emotion_detector.videos.db import MIGRATIONS
from tests.conftest import ROOT
from tests.videos.conftest import new_postgres_database

pytestmark = pytest.mark.slow  # processes racing to migrate one database

MIGRATE = "import sys; from emotion_detector.videos.db import migrate; migrate(sys.argv[1])"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_migrating_a_fresh_database_at_once_all_succeed(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'videos.db'}" if backend == "sqlite" else request.getfixturevalue("postgres_database")
    racers = [subprocess.Popen([sys.executable, "-c", MIGRATE, url], cwd=ROOT, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    failures = [racer.stderr.read().strip().splitlines()[-3:] for racer in racers if racer.wait(timeout=120)]
    assert failures == []
    assert {"videos", "segments", "observations", "people"} <= set(inspect(create_engine(url)).get_table_names())


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_job_cancelled_before_cancelled_was_a_state_reads_as_cancelled(backend, tmp_path):
    with contextlib.nullcontext(f"sqlite:///{tmp_path / 'videos.db'}") if backend == "sqlite" else new_postgres_database() as url:
        upgrade_a_database_with_old_cancels(url)


def upgrade_a_database_with_old_cancels(url: str) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("path_separator", "os")
    config.set_main_option("sqlalchemy.url", url)
    command.upgrade(config, "0001")
    engine = create_engine(url)
    columns = (
        "id, filename, source_path, status, error, cancel_requested, attempts, created_at, width, height, fps, frame_count, duration_s"
    )
    jobs = [
        ("cancelled", "failed", "cancelled by the user", True),
        ("broken", "failed", "no frames", False),
        ("busy", "running", None, False),
    ]
    with engine.begin() as connection:
        for video_id, status, error, cancel_requested in jobs:
            connection.execute(
                text(
                    f"INSERT INTO videos ({columns}, every_n_frames, finalising, render_progress) VALUES (:id, 'a.mp4', '/a.mp4', "
                    ":status, :error, :cancel_requested, 0, CURRENT_TIMESTAMP, 64, 64, 30, 30, 1, 1, FALSE, 0)"
                ),
                {"id": video_id, "status": status, "error": error, "cancel_requested": cancel_requested},
            )
    command.upgrade(config, "head")
    with engine.connect() as connection:
        rows = connection.execute(text("SELECT id, status, error, segments_joined FROM videos ORDER BY id")).all()
    engine.dispose()
    assert [tuple(row) for row in rows] == [
        ("broken", "failed", "no frames", 0),
        ("busy", "running", None, 0),
        ("cancelled", "cancelled", None, 0),
    ]
