# The only interface anyone needs. Everything runs inside the runtime that runtime/env.sh picks:
# a native virtualenv where TFX 1.21's wheels load (glibc >= 2.39), else a Debian 13 root.
SHELL := /bin/bash
ENV := runtime/env.sh
PYTEST_ARGS ?=

.PHONY: setup lint test test-fast demo shell run info

setup:
	@$(ENV) setup

# Ruff's lint and format check, configured in pyproject.toml (CI runs them before the tests); `ruff format .` formats.
lint: setup
	$(ENV) exec ruff check .
	$(ENV) exec ruff format --check .

# The full suite (CI: .ci/run). test-fast leaves out the TFX/Beam and slow tiers (markers in setup.cfg; README, Tests).
# Both run in WORKERS processes (pytest-xdist); each test file stays whole on one worker, and the files sharing the
# session's pipeline runs share one (tests/conftest.py, worker_scope). `WORKERS=0` runs in the pytest process alone.
WORKERS ?= 2
XDIST := $(if $(filter-out 0,$(WORKERS)),-n $(WORKERS) --dist loadfile)

test: setup
	$(ENV) exec python -m pytest $(XDIST) $(PYTEST_ARGS)

test-fast: setup
	$(ENV) exec python -m pytest $(XDIST) -m "not tfx and not slow" $(PYTEST_ARGS)

# The main job on bundled data: the private TFX pipeline on scikit-learn's breast-cancer data, end to end
# (all eight stages, DP-SGD calibrated to epsilon 3, privacy-gated Evaluator, Pusher), then its report.
# Re-running reuses cached stages; `make demo DEMO_ROOT=...` picks another folder.
DEMO_ROOT ?= out/demo-pipeline
demo: setup
	$(ENV) exec ppml pipeline run --dp --target-epsilon 3 --pipeline-root $(DEMO_ROOT)

shell: setup
	$(ENV) shell

run: setup
	$(ENV) exec $(ARGS)

info:
	@$(ENV) info
