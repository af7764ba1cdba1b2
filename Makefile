# The two commands: `make demo` (the main job) and `make test`. Both set up .venv idempotently.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
WORKDIR ?= demo_out
DATA ?=
N ?= 400
# Test processes: the e2e runs use about one core each, so 2 processes fill a 2-core machine.
# Tests sharing an expensive fixture stay in one process (tests/conftest.py, `xdist_group`).
TEST_JOBS ?= 2
PYTEST := $(PY) -m pytest -q -n $(TEST_JOBS) --dist loadgroup --no-loadscope-reorder

.PHONY: venv demo test test-fast lint bench bench-quick image clean lock

venv:
	@bash scripts/bootstrap.sh

lint: venv
	$(VENV)/bin/ruff check .

test: venv lint
	$(PYTEST) --durations=30 tests

test-fast: venv
	$(PYTEST) -m "not slow" tests

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
