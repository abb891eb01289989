"""The fast layer's rule: a test not marked slow starts no process (tests/conftest.py enforces it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import ProcessStarted


@pytest.mark.parametrize(
    "start",
    [
        lambda: subprocess.run([sys.executable, "-c", "pass"], check=False),
        lambda: subprocess.Popen(["true"]),
        lambda: os.system("true"),
        lambda: os.fork(),
    ],
    ids=["subprocess.run", "Popen", "os.system", "os.fork"],
)
def test_a_test_not_marked_slow_cannot_start_a_process(start):
    with pytest.raises(ProcessStarted, match=r"mark it @pytest\.mark\.slow"):
        start()


@pytest.mark.slow  # it starts one
def test_a_slow_test_can_start_a_process():
    assert subprocess.run([sys.executable, "-c", "pass"], check=False).returncode == 0
