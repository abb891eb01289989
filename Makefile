# make run   install into .venv and start every process in the Procfile (restarted if one dies), from this
#            checkout, with its data in ./instance (EMOTION_INSTANCE_DIR; requirements-nodeps.txt: wheels
#            installed without their declared dependencies)
# make lint  the linter, the type checker and the static security scan (bandit), offline
# make test  install the dev requirements, run make lint, then the whole test suite
#            (pytest -m "not slow": the fast, in-process layer alone, in under two minutes)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.runtime: requirements.txt requirements-nodeps.txt serving/requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt training/requirements.txt
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

run: export EMOTION_INSTANCE_DIR ?= $(CURDIR)/instance
run: $(VENV)/.runtime
	$(BIN)/python -m emotion_detector run

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/bandit -q -c pyproject.toml -r emotion_detector serving training bench

test: lint
	$(BIN)/python -m pytest

bench: $(VENV)/.dev
	$(BIN)/python -m bench.serving --models emotion age gender
