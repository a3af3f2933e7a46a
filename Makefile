# One-command set-up: every target that needs Python makes .venv first.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Default suite runs on both cores; slow suites are behind `make test-slow`.
PYTEST := $(BIN)/python -m pytest -n 2 -p no:cacheprovider

.PHONY: install lint test test-slow bench demo clean mutate

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch first, so nothing pulls a multi-GB CUDA build.
	$(BIN)/python -m pip install -q torch==2.13.0
	# flwr 1.42 needs a certifi newer than some registries serve; 1.41 works everywhere.
	$(BIN)/python -m pip install -q flwr==1.41.0
	$(BIN)/python -m pip install -q -e '.[all]'
	touch $(STAMP)

# Static checks, configured in pyproject.toml: ruff (lint and format) and mypy.
LINT_PATHS := secagg protocols fl bench

lint: $(STAMP)
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy $(LINT_PATHS)

test: $(STAMP) lint
	$(PYTEST) -m "not slow" tests

test-slow: $(STAMP)
	HYPOTHESIS_PROFILE=slow $(PYTEST) -m slow tests

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

demo: $(STAMP)
	$(BIN)/python -m fl.demo

# The five research notebooks: rebuild each from notebooks/make_notebooks.py and execute it in
# place (quick mode), outputs and figures included; `make lab` opens them in JupyterLab on .venv.
.PHONY: notebooks lab

notebooks: $(STAMP)
	$(BIN)/python notebooks/make_notebooks.py

# Jupyter refuses to start as root without --allow-root; containers and CI machines often run as root.
LAB_ARGS ?= $(if $(filter 0,$(shell id -u)),--allow-root)

lab: $(STAMP)
	$(BIN)/jupyter lab $(LAB_ARGS) notebooks/

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache

# Each curated mutation of the security core must be killed by its named tests (see tests/mutations).
mutate-curated: $(STAMP)
	$(BIN)/python tests/mutations/run_curated.py

# Mutation testing of the security core with mutmut, one module group at a time, each judged by
# its own fast tests (tests/mutations/run_mutmut.py; results and judged survivors: MUTATION.md).
# mutmut, not cosmic-ray: it mutates a copy (mutants/), never the sources, forks each mutant from
# one warm pytest process, and runs only the tests that call the mutated function. Not in `make test`.
# `make mutate MUTATE_ARGS=--all` adds the session core, client and server (about 2 h more).
MUTATE_JOBS ?= 2
MUTATE_ARGS ?=

mutate: $(STAMP)
	$(BIN)/python tests/mutations/run_mutmut.py --jobs $(MUTATE_JOBS) $(MUTATE_ARGS)
	$(BIN)/python tests/mutations/mutmut_report.py
