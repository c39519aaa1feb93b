# Two entry points, each bootstrapping its own isolated environment in .venv:
#   make demo   start the Flask example shop on embedded defaults (SQLite + fake Stripe) on
#               127.0.0.1 and print its URL; `make demo ARGS=--walkthrough` runs the same flow
#               headless and exits non-zero if any step fails
#   make test   the whole test suite: ruff, mypy --strict, the docs build, pytest (what CI runs)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(PY) -m examples.flask_app $(ARGS)

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m mypy
	$(PY) -m mkdocs build --strict --quiet -d build/site
	$(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
