# The two entry points of the README. Each creates .venv and installs jrnn with its
# test extras (pinned in pyproject.toml) the first time, then runs. --no-cache-dir: the
# test extras take about 3.8 GB installed; pip's wheel cache would add another ~1.5 GB.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.jrnn-installed

.PHONY: demo test lint bench

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --no-cache-dir --upgrade pip
	$(BIN)/python -m pip install --quiet --no-cache-dir -e ".[test]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/jrnn demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 -q

bench: $(STAMP)
	$(BIN)/python -m bench
