# The two commands that set up a fresh machine (README, .ci/run): make install, make test.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install test test-fast lint bench clean

install:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: this resolves to the local CPU wheel; unpinned, pip pulls GBs of CUDA packages.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev,bench,ray]'

# Lint first (a second): style drift fails CI like a broken test.
test: lint
	$(PY) -m pytest

test-fast:
	$(PY) -m pytest -m "not slow"

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) movierec-data .pytest_cache
