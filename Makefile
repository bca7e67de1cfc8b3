# Herald: `make run` starts it on an embedded SQLite file; `make test` runs the whole suite; `make lint` ruff and mypy.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
HOST ?= 127.0.0.1
PORT ?= 8080
PYTEST_ARGS ?=

.PHONY: run test fuzz install lint bench bench-full screenshots clean

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

tests/js/node_modules/.package-lock.json: tests/js/package-lock.json
	cd tests/js && npm ci --no-audit --no-fund --loglevel=error

run: $(STAMP)
	$(VENV)/bin/herald serve --host $(HOST) --port $(PORT)

test: $(STAMP) tests/js/node_modules/.package-lock.json
	$(PY) -m pytest -q $(PYTEST_ARGS)

# Schemathesis over the OpenAPI document alone, on SQLite and PostgreSQL (`make test` runs it too).
fuzz: $(STAMP)
	$(PY) -m pytest -q tests/api/test_schemathesis.py $(PYTEST_ARGS)

# The dashboard's pages at desktop and phone sizes, as the browser tests see them (needs Debian's chromium).
screenshots: $(STAMP)
	HERALD_SCREENSHOTS=docs/screenshots HERALD_REQUIRE_BROWSER=1 $(PY) -m pytest -q tests/browser

LINT_STAMP := $(VENV)/.lint-stamp

$(LINT_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,lint]'
	@touch $(LINT_STAMP)

lint: $(LINT_STAMP)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

BENCH_STAMP := $(VENV)/.bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(PY) -m pip install -q -e '.[test,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(PY) -m bench --quick

bench-full: $(BENCH_STAMP)
	$(PY) -m bench --full

clean:
	rm -rf $(VENV) tests/js/node_modules .pytest_cache .mypy_cache .ruff_cache
