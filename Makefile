# Two commands do all the set-up on a fresh machine:
#   make serve   - run the server with embedded defaults (SQLite in ~/.openjules)
#   make test    - run the whole test suite (SQLite and PostgreSQL, compat clients)
VENV ?= .venv
PYTHON ?= python3
# What is installed in the venv: the server alone (make serve), or also the test tools.
SERVE_STAMP := $(VENV)/.installed-serve
DEV_STAMP := $(VENV)/.installed-dev
NODE_DIR := tests/compat/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: serve test lint typecheck bench clean system-deps browser-deps

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip

$(SERVE_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e .
	touch $(SERVE_STAMP)

# The test tools on top of the server (a venv made by `make test` also serves).
$(DEV_STAMP): pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(DEV_STAMP) $(SERVE_STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

system-deps:
	scripts/install-system-deps

# Debian's chromium, for the web app's browser tests (serving needs no browser).
browser-deps:
	scripts/install-browser

serve: $(SERVE_STAMP) system-deps
	$(VENV)/bin/openjules serve

# pytest runs on PYTEST_WORKERS pytest-xdist workers. A unit of work is one test file's
# tests on one database backend, so each file's live server still starts once per backend;
# the slowest files go first (tests/parallel.py). 2 workers, one per core of the 2-core
# machines CI and developers have (the README's Development section has the figures).
# -n 3 measured 7-18% faster in three back-to-back pairs of full runs (497/522/636 s
# against 535/638/687 s) but has not had a clean-clone CI run yet: PYTEST_WORKERS=3. For one test: make test PYTEST_ARGS="-n0 tests/api/test_auth.py"
# (or PYTEST_WORKERS=0, or PYTEST_ARGS="-p no:xdist ...", which drops the -n below).
PYTEST_WORKERS ?= 2
PYTEST_XDIST = $(if $(findstring no:xdist,$(PYTEST_ARGS)),,-n $(PYTEST_WORKERS) --dist loadscope)

test: $(DEV_STAMP) $(NODE_STAMP) system-deps browser-deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_XDIST) $(PYTEST_ARGS)

lint: $(DEV_STAMP)
	$(VENV)/bin/ruff check src tests bench

typecheck: $(DEV_STAMP)
	$(VENV)/bin/mypy

bench: $(DEV_STAMP)
	$(VENV)/bin/python bench/api.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules
