# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat setup.cfg pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install run test lint format bench clean

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

# BIND=HOST:PORT serves elsewhere than gunicorn.conf.py's 127.0.0.1:8000.
BIND ?=

run: install
	$(BIN)/flask --app authsvc db upgrade
	$(BIN)/gunicorn wsgi:app $(if $(BIND),--bind $(BIND))

# The suite runs on TEST_WORKERS pytest-xdist workers (docs/testing.md says why so many
# on two cores); PYTEST_ARGS adds pytest options, e.g. `make test PYTEST_ARGS=-rs`
# lists every skipped test with its reason. Bytecode is written even where the
# environment says PYTHONDONTWRITEBYTECODE: without it each of pytest's processes
# spends some 10 s of CPU rewriting the test modules and plugins' asserts anew.
TEST_WORKERS ?= 6
PYTEST_ARGS ?=

test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup \
		--no-loadscope-reorder $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Loads the real service under gunicorn; see bench/README.md for the knobs.
bench: install
	$(BIN)/python -m bench

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) instance .pytest_cache .ruff_cache *.egg-info
