# Two commands do all the set-up on a fresh machine:
#   make serve   - run the server with embedded defaults (SQLite in ~/.openjules)
#   make test    - run the whole test suite (SQLite and PostgreSQL, compat clients)
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed
NODE_DIR := tests/compat/node
NODE_STAMP := $(NODE_DIR)/node_modules/.installed

.PHONY: serve test lint typecheck bench clean system-deps

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $(STAMP)

$(NODE_STAMP): $(NODE_DIR)/package.json $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

system-deps:
	scripts/install-system-deps

serve: $(STAMP) system-deps
	$(VENV)/bin/openjules serve

test: $(STAMP) $(NODE_STAMP) system-deps
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests bench

typecheck: $(STAMP)
	$(VENV)/bin/mypy

bench: $(STAMP)
	$(VENV)/bin/python bench/api.py

clean:
	rm -rf $(VENV) $(NODE_DIR)/node_modules
