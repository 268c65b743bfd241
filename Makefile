# Sanctum's single entry point. `make test` and `make demo` bootstrap everything they need.
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LOCK := requirements/dev.lock

# Debian packages the test suite needs (PostgreSQL server, container tools, registry, FUSE).
APT_PACKAGES := $(shell sed 's/#.*//' requirements/apt.txt)
LINT_PATHS := $(wildcard src tests benchmarks)

.PHONY: help venv system-deps lint test test-fast demo bench clean lock launcher

help:
	@echo "make demo   run the Sanctum demo (bootstraps .venv first)"
	@echo "make test   lint + the whole test suite (bootstraps .venv and system packages)"
	@echo "make lint   ruff check, ruff format --check, mypy --strict"
	@echo "make bench  run the benchmarks in benchmarks/ and print their results"
	@echo "make launcher  build the launcher: build/launcher/sanctum-launcher (one executable) and"
	@echo "               build/launcher/sanctum-launcher.d/ (plain files, for Gramine builds)"
	@echo "make clean  remove the virtualenv, caches and demo state"
	@echo "make lock   re-resolve requirements/dev.lock from pyproject.toml"

$(STAMP): pyproject.toml $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(LOCK)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

venv: $(STAMP)

system-deps:
	@scripts/system-deps.sh $(APT_PACKAGES)

lint: venv
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	$(BIN)/mypy

test: venv system-deps lint
	$(BIN)/pytest

test-fast: venv
	$(BIN)/pytest -x -q -m "not slow"

# The end-to-end demo (sanctum demo): manager, conversion, attestation, refusals. State: .sanctum/
demo: venv system-deps launcher
	$(BIN)/sanctum demo $(DEMO_ARGS)

bench: venv
	@for b in benchmarks/bench_*.py; do [ -e "$$b" ] || continue; echo "== $$b"; $(BIN)/python "$$b"; done

# The self-contained launcher the converter ships as /sanctum/launcher (ADR 0103; needs gcc),
# and, from the same analysis, the launcher directory Gramine builds ship as /sanctum/launcher.d/
# (ADR 0135). Its files have fixed mtimes (0), so the directory is checked for presence only.
LAUNCHER_BIN := build/launcher/sanctum-launcher
LAUNCHER_DIR := $(LAUNCHER_BIN).d
launcher: $(LAUNCHER_BIN) $(LAUNCHER_DIR)/sanctum-launcher

$(LAUNCHER_DIR)/sanctum-launcher: $(LAUNCHER_BIN)
	@test -f $@ || $(BIN)/python -m sanctum.launcher.build --out $(LAUNCHER_BIN)

$(LAUNCHER_BIN): $(STAMP) $(wildcard src/sanctum/launcher/*.py src/sanctum/launcher/*.c src/sanctum/protocol/*.py src/sanctum/platforms/*.py src/sanctum/encfs/*.py src/sanctum/errors.py src/sanctum/converter/manifest*.py src/sanctum/converter/sigstruct.py src/sanctum/converter/measurement.py src/sanctum/converter/runtime_layer.py)
	$(BIN)/python -m sanctum.launcher.build --out $@

lock:
	$(PYTHON) -m pip install --quiet uv
	$(PYTHON) -m uv pip compile --python-version 3.11 pyproject.toml --extra test --extra launcher-build -o $(LOCK) --no-header --quiet

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis .sanctum build src/*.egg-info
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
