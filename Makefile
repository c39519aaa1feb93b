# Entry points, each bootstrapping its own isolated environment in .venv:
#   make demo   start the Flask example shop on embedded defaults (SQLite + fake Stripe) on
#               127.0.0.1 and print its URL; `make demo ARGS=--walkthrough` runs the same flow
#               headless and exits non-zero if any step fails
#   make test   the whole test suite (what CI runs): ruff check, ruff format --check, mypy
#               (--strict, src/ and tests/), the docs build (--strict, with the API reference),
#               then pytest with a branch-coverage report of src/ that fails under the floor
#               set in pyproject.toml ([tool.coverage.report] fail_under). The floor assumes
#               the database servers are up (`bash scripts/ci-services.sh`): without them the
#               SQL tests skip and coverage drops about two points
#   make unit   the inner loop: unit tests and the in-memory contract suite, no coverage, no
#               database server, a few seconds; `make unit PYTEST_ARGS="-x -k webhook"` narrows it
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv demo test unit clean

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
	$(PY) -m ruff format --check .
	$(PY) -m mypy
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict -d build/site
	$(PY) -m pytest --cov --cov-report=term-missing:skip-covered $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit tests/contract/test_memory.py $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
