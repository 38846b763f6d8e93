# One-command entry points. `make demo` and `make test` work on a fresh machine: they create .venv and install
# exactly the locked versions (requirements/dev.txt, hashes checked) before running.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
LOCK := requirements/dev.txt
NMT_DATA_DIR ?= $(abspath ../shared/data/multi30k)
export NMT_DATA_DIR
# package names as PyPI compares them (lower case, "-" for "_" and "."), sorted: to compare a freeze with the lock
NORMALIZE := sed -E -e ':a' -e 's/^([^=]*)[._]/\1-/' -e 'ta' | tr 'A-Z' 'a-z' | sort
# pip-compile's options for both lock files (hashes; setuptools and pip included; no machine's index in the file)
COMPILE := --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url --no-emit-find-links

.PHONY: setup demo test test-unit test-latest lock lint clean

setup: $(VENV)/.installed

# The lock, and nothing else: every package at its locked version and hash, then nmt itself without dependencies.
$(VENV)/.installed: $(LOCK) pyproject.toml
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r $(LOCK)
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $@

# Train the tiny config on the local Multi30k copy, translate a few test sentences, score the test set.
demo: setup
	rm -rf runs/demo
	$(BIN)/nmt train --config configs/tiny.yaml --output-dir runs/demo
	head -n 5 $(NMT_DATA_DIR)/test_2016_flickr.de | $(BIN)/nmt translate --model runs/demo --beam-size 5
	$(BIN)/nmt evaluate --model runs/demo --split test --beam-size 5

# What CI runs (.ci/run): the programs the tests drive (Chromium; installed where it can be), ruff, every test.
test: setup
	bash .ci/system-packages
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

# The unit tests only (no training to the end, no server, no fuzzing or soak): 30-40 s of CPU time.
test-unit: setup
	$(BIN)/python -m pytest -q -m "not slow"

# The suite against the newest releases of every dependency (torch stays 2.13.0: requirements/pins.in), in its own
# .venv-latest: drift
# seen on purpose. The versions it took are in .venv-latest/versions.txt, their difference from the lock printed.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip
	.venv-latest/bin/pip install --quiet --upgrade --upgrade-strategy eager -c requirements/pins.in -e '.[dev]'
	.venv-latest/bin/pip freeze --all --exclude-editable | $(NORMALIZE) > .venv-latest/versions.txt
	-grep -o '^[a-zA-Z0-9_.-]*==[^ ]*' $(LOCK) | $(NORMALIZE) | diff - .venv-latest/versions.txt
	bash .ci/system-packages
	.venv-latest/bin/ruff check .
	NMT_TEST_LATEST=1 .venv-latest/bin/python -m pytest -q

# Re-resolve both lock files from pyproject.toml and requirements/pins.in with pip-tools (newest compatible
# releases); requirements/main.txt (the Docker image's) is constrained to the versions of requirements/dev.txt.
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet pip-tools==7.7.0
	.venv-lock/bin/pip-compile $(COMPILE) --extra dev -o requirements/dev.txt pyproject.toml requirements/pins.in
	.venv-lock/bin/pip-compile $(COMPILE) -c requirements/dev.txt -o requirements/main.txt \
		pyproject.toml requirements/pins.in

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .venv-latest .venv-lock runs/demo .pytest_cache .ruff_cache
