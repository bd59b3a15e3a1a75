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

demo: setup
	$(ENV) exec ppml epsilon --n 60000 --batch-size 256 --noise-multiplier 1.1 --epochs 60 --delta 1e-5

shell: setup
	$(ENV) shell

run: setup
	$(ENV) exec $(ARGS)

info:
	@$(ENV) info
