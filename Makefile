# The only interface anyone needs. Everything runs inside the runtime that runtime/env.sh picks:
# a native virtualenv where TFX 1.21's wheels load (glibc >= 2.39), else a Debian 13 root.
SHELL := /bin/bash
ENV := runtime/env.sh
PYTEST_ARGS ?=

.PHONY: setup test demo shell run info

setup:
	@$(ENV) setup

test: setup
	$(ENV) exec python -m pytest $(PYTEST_ARGS)

# The main job on bundled data: the private TFX pipeline on scikit-learn's breast-cancer data, end to end
# (all eight stages, DP-SGD calibrated to epsilon 3, privacy-gated Evaluator, Pusher), then its report.
# Re-running reuses cached stages; `make demo DEMO_ROOT=...` picks another folder.
DEMO_ROOT ?= out/demo-pipeline
demo: setup
	$(ENV) exec ppml pipeline run --private --target-epsilon 3 --pipeline-root $(DEMO_ROOT)

shell: setup
	$(ENV) shell

run: setup
	$(ENV) exec $(ARGS)

info:
	@$(ENV) info
