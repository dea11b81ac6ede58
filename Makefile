# Fabric: `make demo` runs the whole flow on the demo estate; `make test` runs the test suite.
# Both create .venv if it is missing and install the project into it first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FABRIC_HOME ?= $(CURDIR)/.fabric
export DAGSTER_HOME ?= $(FABRIC_HOME)/dagster_home

.PHONY: install demo test ui lint bench clean

# Installation is stamped: it re-runs only when pyproject.toml changes. Packages are installed
# with their bytecode compiled: where PYTHONDONTWRITEBYTECODE is set (this machine, many container
# images) every process would otherwise compile what it imports (`import dagster` 1.9 s -> 0.5 s,
# `import sklearn` 2.7 s -> 0.9 s), and each Dagster run, dbt call and CLI command is a process.
$(VENV)/.installed: pyproject.toml
	@start=$$(date +%s); \
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv; \
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev]"; \
	grep -q DAGSTER_HOME $(BIN)/activate || \
	  echo 'export DAGSTER_HOME="$(DAGSTER_HOME)"  # Fabric: the project instance (pools, runs)' >> $(BIN)/activate; \
	touch $@; \
	echo "install phase: $$(( $$(date +%s) - start )) s"

install: $(VENV)/.installed
	@$(BIN)/python -m compileall -q fabric assets > /dev/null  # the project's own (editable) modules
	@$(BIN)/fabric dbt prepare

demo: install
	@start=$$(date +%s); \
	$(BIN)/fabric demo generate --reuse && \
	$(BIN)/fabric demo run; status=$$?; \
	echo "demo phase: $$(( $$(date +%s) - start )) s"; exit $$status

test: install
	$(BIN)/python -m pytest

ui: install
	$(BIN)/dagster dev

lint: install
	$(BIN)/ruff check fabric assets tests benchmarks
	$(BIN)/mypy fabric assets

# The benchmarks' baselines (dlt, ADBC, pandas) come with the `bench` extra.
bench: install
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[dev,bench]"
	$(BIN)/python benchmarks/pipeline.py

clean:
	rm -rf $(FABRIC_HOME) dbt_project/target dbt_project/logs
