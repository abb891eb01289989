# make run   install into .venv (requirements-nodeps.txt: wheels installed without their declared dependencies;
#            this checkout in editable mode: .venv/bin/emotion-detector runs its code) and start every process
#            in the Procfile (restarted if one dies); the data goes to ./instance, by the rule in settings.py
# make lint  the linter, the type checker and the static security scan (bandit), offline
# make test  install the dev requirements, run make lint, then the whole test suite
#            (pytest -m "not slow": the fast, in-process layer alone, in under two minutes)
# make e2e   the production browser suite alone (tests/e2e; make test runs it too): PostgreSQL, Redis and
#            Mosquitto on this machine, Debian's chromium and chromium-driver
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test e2e lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt requirements-nodeps.txt serving/requirements.txt pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt training/requirements.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

run: $(VENV)/.runtime
	$(BIN)/python -m emotion_detector run

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r emotion_detector serving training bench

test: lint
	$(BIN)/python -m pytest

e2e: $(VENV)/.dev
	$(BIN)/python -m pytest tests/e2e

bench: $(VENV)/.dev
	$(BIN)/python -m bench.serving --models emotion age gender
