# Every target sets itself up from a fresh clone: only python3, pip and make are needed.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test test-simd lint bench fuzz clean

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

# Lint, format and type checks first (configured in pyproject.toml), then the tests.
# One BLAS thread: these networks are small, and a busy machine makes threaded BLAS much slower.
# The suite in two halves at once, one a core (each its own temporary folder); the cluster tests are all in the
# second half, so one Dask cluster runs at a time. `$(PY) -m pytest` alone runs the whole suite in one process.
HALF_A := tests/test_playground_browser.py tests/test_demo.py tests/test_notebook.py tests/test_sklearn.py \
	tests/sklearn_suite tests/test_readme.py tests/test_animation.py
test: lint
	@rm -rf .pytest-a .pytest-b
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest --basetemp=.pytest-a $(HALF_A) > .pytest-a.log 2>&1 & \
	a=$$!; \
	OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest --basetemp=.pytest-b $(addprefix --ignore=,$(HALF_A)); \
	b=$$?; wait $$a; a=$$?; echo "--- the other half:"; cat .pytest-a.log; \
	rm -rf .pytest-a .pytest-b .pytest-a.log; test $$a -eq 0 -a $$b -eq 0

# The engine and compile tests again with NumPy's AVX-512 loops off (harmless where a CPU has none): NumPy's
# SIMD exp and log1p differ from Python's math in the last bit, so the written-out path's allowances must
# hold with and without them, and the NumPy replay must stay bit for bit either way.
NO_AVX512 := X86_V4 AVX512_ICL AVX512_SPR
ENGINE_TESTS := tests/test_tensor.py tests/test_ops.py tests/test_against_autograd.py tests/test_trace.py \
	tests/test_scalar.py tests/test_train.py tests/test_restarts.py
test-simd: $(VENV)/.test
	NPY_DISABLE_CPU_FEATURES="$(NO_AVX512)" OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 $(PY) -m pytest $(ENGINE_TESTS)

# Lint, formatting and types (configured in pyproject.toml).
lint: $(VENV)/.test
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy

bench: $(VENV)/.bench
	$(PY) benchmarks/run.py

$(VENV)/.fuzz: $(VENV)/bin/python pyproject.toml
	$(PY) -m pip install -q -e ".[fuzz]"
	touch $@

# Coverage-guided fuzzing (atheris) of read_csv, modelfile.from_dict and cli.main for FUZZ_SECONDS;
# the corpus grows in .fuzz-corpus/ (git-ignored) from run to run; an input that fails is kept in .fuzz-crashes/.
FUZZ_SECONDS ?= 60
fuzz: $(VENV)/.fuzz
	@mkdir -p .fuzz-crashes
	OPENBLAS_NUM_THREADS=1 $(PY) fuzz/run.py -max_total_time=$(FUZZ_SECONDS) -timeout=20 -rss_limit_mb=4096 \
		-artifact_prefix=$(CURDIR)/.fuzz-crashes/ .fuzz-corpus

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .ruff_cache .mypy_cache chainrule-demo .fuzz-corpus .fuzz-work .fuzz-crashes
