# The two commands: `make demo` (the main job) and `make test`. Both set up .venv idempotently.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= demo_out
DATA ?=
N ?= 400

.PHONY: venv demo test test-fast lint bench bench-quick image clean lock

venv:
	@bash scripts/bootstrap.sh

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PY) -m pytest -q -m "not slow" tests
	$(PY) -m pytest -q -m slow --durations=25 tests

test-fast: venv
	$(PY) -m pytest -q -m "not slow" tests

demo: venv
	@DATA="$(DATA)" WORKDIR="$(WORKDIR)" N="$(N)" bash scripts/demo.sh

bench: venv
	$(PY) -m bench.run_all

bench-quick: venv
	$(PY) -m bench.run_all --quick

image:
	docker build -f kubeflow/Dockerfile -t poster-similarity-pipeline:latest .

lock:
	uv pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_28 requirements/base.in -o requirements/lock.txt

clean:
	rm -rf $(WORKDIR) .pytest_cache
