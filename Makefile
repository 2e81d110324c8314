# Verbs of the blood-cell notebook suite. `make help` lists them.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
RUNTIME_STAMP := $(VENV)/.runtime-installed
DEV_STAMP := $(VENV)/.dev-installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# Data for the real-data verbs: the challenge's npz or an 8-class image folder.
DATA ?= data/training_set.npz
PROFILE ?= cpu
# The platform's stack (TensorFlow 2.17.0 + Keras 3.4.1), cached outside the clone.
PLATFORM_VENV ?= $(HOME)/.cache/bloodcell-suite/platform-tf2.17.0-keras3.4.1
PLATFORM_STAMP := $(PLATFORM_VENV)/.installed
export BLOODCELL_PLATFORM_VENV := $(PLATFORM_VENV)

.DEFAULT_GOAL := help
.PHONY: help run run-real test test-fast lint lab benchmark bench platform-venv check-submission clean-venv

help: ## List the verbs.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-18s %s\n", $$1, $$2}'

$(RUNTIME_STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || { echo "Creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	@echo "Installing requirements.txt into $(VENV) (first time: a few minutes)"
	$(PIP) install -r requirements.txt
	$(PIP) install --no-deps -e .
	@# A kernel that always starts this environment's Python, whoever launches Jupyter.
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (blood-cell suite)" >/dev/null
	@touch $@

# The tests also need the optional Ray of requirements-scale.txt (sweeps fanned out with --workers).
$(DEV_STAMP): $(RUNTIME_STAMP) requirements-dev.txt requirements-scale.txt
	$(PIP) install -r requirements-dev.txt -r requirements-scale.txt
	@touch $@

$(PLATFORM_STAMP): requirements-platform.txt
	@echo "Creating the platform's stack in $(PLATFORM_VENV) (once)"
	@test -x $(PLATFORM_VENV)/bin/python || $(PYTHON) -m venv $(PLATFORM_VENV)
	$(PLATFORM_VENV)/bin/python -m pip --disable-pip-version-check -q install -r requirements-platform.txt
	@touch $@

run: $(RUNTIME_STAMP) ## Run every notebook on the embedded synthetic data (smoke profile) into outputs/.
	$(BIN)/python -m utils.runner --profile smoke

run-real: $(RUNTIME_STAMP) ## Run on real data: make run-real DATA=../shared/data/blood_cells_96 [PROFILE=cpu|gpu].
	$(BIN)/python -m utils.runner --profile $(PROFILE) --data $(DATA)

test: lint $(PLATFORM_STAMP) ## Run the whole test suite (lint, unit tests, notebooks through papermill, platform check).
	$(BIN)/python -m pytest -ra

test-fast: lint ## Run the tests that execute no notebook and no slow check, in a few minutes (lint first).
	$(BIN)/python -m pytest -ra -m "not slow and not notebooks"

lint: $(DEV_STAMP) ## ruff: lint and format check of code and notebooks (fix with `.venv/bin/ruff format . && .venv/bin/ruff check --fix .`).
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

platform-venv: $(PLATFORM_STAMP) ## Install the platform's stack (TF 2.17.0, Keras 3.4.1) outside the clone, once.

check-submission: $(RUNTIME_STAMP) $(PLATFORM_STAMP) ## Validate a zip in the platform's stack: make check-submission ZIP=outputs/<run>/submission.zip
	@test -n "$(ZIP)" || { echo "error: name the zip: make check-submission ZIP=outputs/<run>/submission.zip" >&2; exit 2; }
	$(BIN)/python -m utils.submission check $(ZIP) --python $(PLATFORM_VENV)/bin/python

lab: $(RUNTIME_STAMP) ## Open the notebooks in JupyterLab.
	$(BIN)/jupyter lab notebooks/

benchmark: $(RUNTIME_STAMP) ## Print the outlier-detection contamination benchmark (results: BENCHMARKS.md).
	$(BIN)/python benchmarks/contamination.py

bench: $(RUNTIME_STAMP) $(PLATFORM_STAMP) ## Run PROFILE (default cpu) 01, 05, 06 on DATA and print one JSON line per measure; RUN=<folder> reads a finished run instead.
	$(BIN)/python -m utils.tools.bench --profile $(PROFILE) $(if $(RUN),--run $(RUN),--data $(if $(filter data/training_set.npz,$(DATA)),../shared/data/blood_cells_96,$(DATA)))

clean-venv: ## Delete .venv (the next verb re-creates it).
	rm -rf $(VENV)
