# The two commands that set up a fresh machine (README, .ci/run): make install, make test.
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: install test test-fast test-elsewhere lint bench clean

install:
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	# torch first, pinned: this resolves to the local CPU wheel; unpinned, pip pulls GBs of CUDA packages.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[dev,bench,ray]'

# Lint first (a second): style drift fails CI like a broken test.
test: lint
	$(PY) -m pytest
	$(MAKE) test-elsewhere

test-fast:
	$(PY) -m pytest -m "not slow"

# The fast suite, plus the slow tests marked `elsewhere`, once more as other machines differ: oneDNN on
# (its default on AVX-512/AMX processors), one BLAS/OpenMP thread, another time zone (with DST), the C
# locale. Catches exact floats, CPU-dependent log lines and TZ/locale/thread-order assumptions before they
# reach a machine of another kind.
ELSEWHERE := TF_ENABLE_ONEDNN_OPTS=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 TZ=America/Los_Angeles LC_ALL=C
test-elsewhere:
	$(ELSEWHERE) $(PY) -m pytest -m "not slow or elsewhere" -p no:cacheprovider

lint:
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) movierec-data .pytest_cache
