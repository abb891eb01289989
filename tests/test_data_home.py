"""One data home (issue 27): the web app, the workers, the forwarder and every command find the data by one rule
(settings.default_instance_dir), whatever directory they start in: code run from a checkout keeps it in the
checkout's instance/, an installed package in the user's data directory; EMOTION_INSTANCE_DIR overrides both.
(Before, `make run` put it in ./instance by an environment variable of its own, and `emotion-detector keys
create` made keys in ~/.local/share that the running app never saw.)"""

from __future__ import annotations

import pytest

from emotion_detector.settings import Settings, checkout_of, default_instance_dir
from tests.conftest import ROOT

DATA_VARIABLES = ("EMOTION_INSTANCE_DIR", "EMOTION_DATABASE_URL", "EMOTION_BROKER_URL", "EMOTION_STORAGE_DIR")


@pytest.fixture
def no_data_settings(monkeypatch, tmp_path):
    """The environment of a person's terminal: no EMOTION_* data settings (the tests' own are removed), started
    from some other directory."""
    for name in DATA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)


def test_code_run_from_the_checkout_keeps_its_data_in_the_checkouts_instance_folder(no_data_settings):
    settings = Settings(_env_file=None)  # reads nothing, writes nothing
    assert checkout_of() == ROOT
    assert settings.instance_dir == ROOT / "instance"
    assert settings.database_url == f"sqlite:///{ROOT / 'instance' / 'emotion-detector.db'}"
    assert settings.broker_url == f"sqla+sqlite:///{ROOT / 'instance' / 'queue.db'}"
    assert settings.storage_dir == ROOT / "instance" / "videos"


def test_an_installed_package_keeps_its_data_in_the_users_data_directory(no_data_settings, monkeypatch, tmp_path):
    installed = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "emotion_detector"
    installed.mkdir(parents=True)
    assert checkout_of(installed) is None
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_instance_dir(installed) == tmp_path / "xdg" / "emotion-detector"
    monkeypatch.delenv("XDG_DATA_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_instance_dir(installed) == tmp_path / "home" / ".local" / "share" / "emotion-detector"


def test_emotion_instance_dir_overrides_the_rule_for_every_path_below_it(no_data_settings, monkeypatch, tmp_path):
    monkeypatch.setenv("EMOTION_INSTANCE_DIR", "somewhere")  # relative: made absolute, so every process agrees
    settings = Settings(_env_file=None)
    assert settings.instance_dir == tmp_path / "somewhere"
    assert settings.database_url == f"sqlite:///{tmp_path / 'somewhere' / 'emotion-detector.db'}"


def test_make_run_leaves_the_data_home_to_the_rule_and_installs_the_command(no_data_settings):
    """`make run` sets no data location of its own (it would differ from the commands'), and installs this
    checkout in editable mode, so that the README's `.venv/bin/emotion-detector ...` exists and runs this code."""
    for name in ("Makefile", "Procfile"):
        assert "EMOTION_INSTANCE_DIR" not in (ROOT / name).read_text(), name
    runtime_recipe = (ROOT / "Makefile").read_text().split("$(VENV)/.runtime:", 1)[1].split("\n\n", 1)[0]
    assert "$(BIN)/pip install -q --no-deps -e ." in runtime_recipe
    assert "instance/" in (ROOT / ".gitignore").read_text().split()
