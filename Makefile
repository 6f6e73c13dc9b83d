# Every target sets itself up from a fresh clone: only python3, pip and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.demo: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e ".[demo]"
	touch $@

$(VENV)/.test: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e ".[test]"
	touch $@

$(VENV)/.bench: $(VENV)/.test
	$(PY) -m pip install -q -e ".[bench]" || echo "torch could not be installed: the benchmark will skip PyTorch"
	touch $@

demo: $(VENV)/.demo
	$(VENV)/bin/chainrule demo

# One BLAS thread: these networks are small, and a busy machine makes threaded BLAS much slower.
test: $(VENV)/.test
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest

bench: $(VENV)/.bench
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache chainrule-demo
