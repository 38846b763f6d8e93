# One-command entry points. `make demo` and `make test` work on a fresh machine: they create .venv and install
# everything (CPU torch 2.13.0 first) before running.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
NMT_DATA_DIR ?= $(abspath ../shared/data/multi30k)
export NMT_DATA_DIR

.PHONY: setup demo test test-unit lint clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

# Train the tiny config on the local Multi30k copy, translate a few test sentences, score the test set.
demo: setup
	rm -rf runs/demo
	$(BIN)/nmt train --config configs/tiny.yaml --output-dir runs/demo
	head -n 5 $(NMT_DATA_DIR)/test_2016_flickr.de | $(BIN)/nmt translate --model runs/demo --beam-size 5
	$(BIN)/nmt evaluate --model runs/demo --split test --beam-size 5

test: setup
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The unit tests only (no training to the end, no server, no fuzzing or soak): 30-40 s of CPU time.
test-unit: setup
	$(BIN)/python -m pytest -q -m "not slow"

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) runs/demo .pytest_cache .ruff_cache
