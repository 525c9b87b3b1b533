# Pānui — entry points. `make run` and `make test` are the two a newcomer needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
BENCH_STAMP := $(VENV)/.bench-stamp
# The --exclude-newer cut-off of `make lock`: the locks hold no release published after it.
LOCK_DATE := 2026-12-01T00:00:00Z
PYTEST_ARGS ?=
# Tests talk to whatever infra-up started (or to the cluster KAFKA_BOOTSTRAP_SERVERS names).
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:$(or $(PANUI_KAFKA_PORT),9092)

.PHONY: help venv install lock audit infra-up infra-down infra-status run demo migrate test test-parallel test-fast bench bench-quick bench-stages bench-stages-quick chaos lint format contracts clean k8s-tools k8s-check notice-tools

help:
	@echo "make run         start local Kafka + intake, dedupe, dispatch on SQLite (Ctrl-C stops)"
	@echo "make demo        a portal breach end to end on the embedded default, live in the terminal"
	@echo "make migrate     bring the make-run databases (var/*.db) to the code's schema"
	@echo "make test        install, start Kafka + PostgreSQL, run the whole suite"
	@echo "make test-parallel  the same over two workers (pytest-xdist; TEST_WORKERS=n)"
	@echo "make infra-up    start local Kafka and PostgreSQL (idempotent); infra-down stops them"
	@echo "make bench       the whole incident at 400k records (long); bench-quick at 20k"
	@echo "make bench-stages  each stage's own benchmark (resolver, intake, dedupe, dispatch)"
	@echo "make chaos       a ~20k-record incident under a seeded schedule of kills and outages (private Kafka/PostgreSQL); writes bench/chaos.json"
	@echo "make lint        ruff and the import contracts (lint-imports)"
	@echo "make lock        re-resolve the hashed locks (requirements*.lock) from pyproject.toml"
	@echo "make audit       check every locked pin against a pinned PyPA advisory-database snapshot"
	@echo "make contracts   re-export contracts/openapi/*.json from the apps"
	@echo "make k8s-check   render deploy/k8s overlays with kustomize and validate them offline"

# Exactly the hashed lock (pip, setuptools and uv too), nothing resolved here, no sdist built; then
# the project itself, editable, with the locked setuptools (no build isolation: nothing unpinned).
$(STAMP): requirements-dev.lock pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "Python 3.11 is required"'
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --require-hashes --no-deps --only-binary=:all: -r requirements-dev.lock
	$(PY) -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

venv install: $(STAMP)

$(BENCH_STAMP): $(STAMP) requirements-bench.lock
	$(PY) -m pip install -q --require-hashes --no-deps --only-binary=:all: -r requirements-bench.lock
	@touch $(BENCH_STAMP)

# Re-resolve the three locks from pyproject.toml with releases up to LOCK_DATE (scripts/lock.sh).
# Move the date forward on purpose (a reviewed upgrade), never implicitly.
lock: $(STAMP)
	@LOCK_DATE=$(LOCK_DATE) UV=$(VENV)/bin/uv scripts/lock.sh

# The locks against a pinned snapshot of the PyPA advisory database (scripts/audit.py); fails on a
# known-vulnerable pin that is not allow-listed.
audit: $(STAMP)
	$(PY) scripts/audit.py $(AUDIT_ARGS)

infra-up: $(STAMP)
	@scripts/kafka.sh up
	@scripts/postgres.sh up

infra-down:
	@scripts/kafka.sh down
	@scripts/postgres.sh down

infra-status:
	@scripts/kafka.sh status
	@scripts/postgres.sh status

run: $(STAMP)
	@scripts/run.sh

# A portal breach from upload to the last email and SMS, on local Kafka + SQLite (no PostgreSQL);
# stops everything it started. DEMO_ARGS="--records 12000" for a bigger one.
demo: $(STAMP)
	@$(PY) -m benchmarks.incident.demo $(DEMO_ARGS)

# What `make run` does before starting the services; one service: `python -m services.<name> migrate`.
migrate: $(STAMP)
	@for service in intake dedupe dispatch; do \
	  DATABASE_URL="sqlite:///$(CURDIR)/var/$$service.db" $(PY) -m services.$$service migrate || exit 1; \
	done

test: infra-up k8s-tools notice-tools
	$(PY) -m pytest $(PYTEST_ARGS)

# The whole suite over two workers (pytest-xdist), one test file per worker at a time so a
# file's module fixtures are built once. Opt-in: `make test` (what CI runs) stays serial.
test-parallel: infra-up k8s-tools notice-tools
	$(PY) -m pytest -n $(or $(TEST_WORKERS),2) --dist loadfile $(PYTEST_ARGS)

# Skip the tests marked slow (broker round-trips, restarts, end-to-end flows).
test-fast: infra-up k8s-tools notice-tools
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The whole incident at the breach's scale (400k records, ~50 agencies, ~126k people) through
# Kafka, PostgreSQL and the three services as processes: bench/results.json. Takes long.
bench: infra-up
	$(PY) -m benchmarks incident $(BENCH_ARGS)

# The same run at 20k records (bench/results-quick.json): a few minutes.
bench-quick: infra-up
	$(PY) -m benchmarks incident --quick $(BENCH_ARGS)

# Each stage on its own (resolver, intake, dedupe, dispatch) at the sizes its goal is stated for.
bench-stages: infra-up $(BENCH_STAMP)
	$(PY) -m benchmarks $(BENCH_ARGS)

# One bounded run (minutes): services, a private broker and a private PostgreSQL killed and
# restarted on a seeded schedule, then reconciliation against ground truth (bench/chaos.json).
# Never touches the shared infra. CHAOS_ARGS="--records 3000 --seed 7" for a smaller run.
chaos: $(STAMP)
	$(PY) -m benchmarks.chaos $(CHAOS_ARGS)

bench-stages-quick: infra-up $(BENCH_STAMP)
	$(PY) -m benchmarks --quick $(BENCH_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check services testkit tests benchmarks scripts
	$(VENV)/bin/lint-imports --no-cache

format: $(STAMP)
	$(VENV)/bin/ruff check --fix services testkit tests benchmarks scripts

contracts: $(STAMP)
	$(PY) -m services.cli.main contracts export

# kustomize and promtool, pinned, built once with the machine's Go into var/tools/.
# pdftotext/pdftoppm, chromium + chromedriver and axe-core for the notice tests (letters, accessibility).
notice-tools:
	@scripts/notice-tools.sh

k8s-tools:
	@deploy/tools/install.sh kustomize promtool >/dev/null

# Render every overlay and validate it: Kubernetes and CRD schemas, cross-references with the
# code, promtool. Needs no cluster; the broker-backed topic-config check runs in `make test`.
k8s-check: $(STAMP) k8s-tools
	$(PY) -m pytest tests/deploy -q -m "not kafka and not postgres" $(PYTEST_ARGS)

clean:
	rm -rf var/*.db var/*.db-* .pytest_cache
