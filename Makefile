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
# The compatibility tier: the suite installed into a hosted GPU runtime's stack (Colab's on Python 3.12, with Kaggle's
# keras-cv and papermill: requirements-colab.txt) and into the newest versions pyproject.toml's ranges allow (Python
# 3.13), each environment created once beside the platform's stack.
COLAB_VENV ?= $(HOME)/.cache/bloodcell-suite/compat-colab-py3.12
NEWEST_VENV ?= $(HOME)/.cache/bloodcell-suite/compat-newest-py3.13
COMPAT_PIP := -m pip --disable-pip-version-check -q
# A Python of version $(1): python$(1) on PATH if it runs (a pyenv shim runs only where that version is selected),
# else the newest pyenv installation of that version. `make test-compat PYTHON312=... PYTHON313=...` names others.
find_python = $(shell for candidate in "$$(command -v python$(1))" $$(ls -d "$$(pyenv root 2>/dev/null)"/versions/$(1).*/bin/python$(1) 2>/dev/null | sort -rV); do "$$candidate" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$(1)')" 2>/dev/null && { echo "$$candidate"; break; }; done)
PYTHON312 ?= $(call find_python,3.12)
PYTHON313 ?= $(call find_python,3.13)
# $(call create_venv,FOLDER,PYTHON,VERSION,VARIABLE): creates the environment FOLDER with PYTHON unless it exists,
# or stops with one sentence when no Python of that VERSION was found or given.
create_venv = test -x $(1)/bin/python || { \
	  test -n "$(2)" || { echo "error: no Python $(3) was found (neither a python$(3) on PATH that runs nor a pyenv $(3).x); name one: make test-compat $(4)=/path/to/python$(3)" >&2; exit 2; }; \
	  "$(2)" -c "import sys; sys.exit('%d.%d' % sys.version_info[:2] != '$(3)')" || { echo "error: $(4)=$(2) is not a Python $(3)." >&2; exit 2; }; \
	  echo "Creating $(1) with $(2) (once)"; "$(2)" -m venv $(1); }

.DEFAULT_GOAL := help
.PHONY: help run run-real test test-fast test-compat lint lab benchmark bench platform-venv check-submission clean-venv

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

# Colab's stack first, then the suite with pip's ordinary resolution; the last step fails if that replaced any pin.
$(COLAB_VENV)/.installed: requirements-colab.txt pyproject.toml
	@$(call create_venv,$(COLAB_VENV),$(PYTHON312),3.12,PYTHON312)
	$(COLAB_VENV)/bin/python $(COMPAT_PIP) install -r requirements-colab.txt
	$(COLAB_VENV)/bin/python $(COMPAT_PIP) install -e '.[dev]'
	$(COLAB_VENV)/bin/python -m utils.tools.stack --expect requirements-colab.txt
	@touch $@

$(NEWEST_VENV)/.installed: pyproject.toml
	@$(call create_venv,$(NEWEST_VENV),$(PYTHON313),3.13,PYTHON313)
	$(NEWEST_VENV)/bin/python $(COMPAT_PIP) install -e '.[dev]'
	@touch $@

# Each environment's editable install is pointed at this clone first: the notebooks' kernels import `utils` through it.
define compat_tier
	@echo "== $(1)"
	@$(1)/bin/python $(COMPAT_PIP) install --no-deps -e .
	@$(1)/bin/python -m utils.tools.stack
	$(1)/bin/python -m pytest -q -rs -p no:cacheprovider -m "not slow and not notebooks"
	$(1)/bin/python -m utils.runner --profile smoke --out outputs/$$(date +%Y%m%d-%H%M%S)_smoke_$(notdir $(1))
endef

run: $(RUNTIME_STAMP) ## Run every notebook on the embedded synthetic data (smoke profile) into outputs/.
	$(BIN)/python -m utils.runner --profile smoke

run-real: $(RUNTIME_STAMP) ## Run on real data: make run-real DATA=../shared/data/blood_cells_96 [PROFILE=cpu|gpu].
	$(BIN)/python -m utils.runner --profile $(PROFILE) --data $(DATA)

test: lint $(PLATFORM_STAMP) ## Run the whole test suite (lint, unit tests, notebooks through papermill, the gpu profile shrunk, platform check).
	$(BIN)/python -m pytest -ra --durations=25

test-fast: lint ## Run the tests that execute no notebook and no slow check, in a few minutes (lint first).
	$(BIN)/python -m pytest -ra -m "not slow and not notebooks"

test-compat: $(COLAB_VENV)/.installed $(NEWEST_VENV)/.installed ## Run the fast tier and a smoke run in Colab's stack (Python 3.12) and in the newest versions pyproject.toml allows (Python 3.13).
	@test -f $(PLATFORM_STAMP) && echo "The platform's stack is installed: notebook 06 checks each smoke run's zip there too." \
	  || echo "The platform's stack is not installed ($(PLATFORM_VENV)): notebook 06 checks the zips in each tier's own stack only (make platform-venv)."
	$(call compat_tier,$(COLAB_VENV))
	@$(COLAB_VENV)/bin/python -m utils.tools.stack --expect requirements-colab.txt >/dev/null
	$(call compat_tier,$(NEWEST_VENV))
	@echo "Both compatibility tiers passed, with:"
	@$(COLAB_VENV)/bin/python -m utils.tools.stack
	@$(NEWEST_VENV)/bin/python -m utils.tools.stack

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
