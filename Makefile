# tcpstack: the two commands a newcomer runs are `make demo` and `make test` (as root).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all deps system-deps test unit lint demo bench clean sim faults compiled compiled-check

all: test

# System tools the demo, tests and benchmark drive (installed only when missing).
system-deps:
	@bash scripts/install-system-deps.sh

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

deps: system-deps $(STAMP)

test: deps
	$(PY) -m pytest $(PYTEST_ARGS)

unit: $(STAMP)
	$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# The deterministic network simulator (tests/sim): `make sim SEEDS=N` runs N random scenarios
# and the fault profiles; `make sim SEED=S` replays the scenario of seed S, as a failure says.
SIM_TESTS = $(if $(SEED),tests/sim/test_simulated_transfers.py::test_random_transfer_keeps_every_invariant --seed $(SEED),tests/sim $(if $(SEEDS),--seeds $(SEEDS)))

sim: $(STAMP)
	$(PY) -m pytest $(SIM_TESTS) $(PYTEST_ARGS)

# Real faults between the kernel's TCP and tcpstack at the issue's full size (50 MB each way;
# `make test` runs the same tests with 2 MiB).
faults: deps
	FAULT_BYTES=50000000 $(PY) -m pytest tests/integration/test_faults.py $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check tcpstack tests scripts examples
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy --strict examples

demo: deps
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

# The optional compiled build: a copy of the tree in build/compiled with the core and the stack
# compiled by mypyc (about a minute; a C compiler needed). Run from it with
# `PYTHONPATH=build/compiled .venv/bin/tcpstack ...`; `make compiled-check` also runs the unit
# tests against it.
compiled: $(STAMP)
	$(PY) scripts/build_compiled.py

compiled-check: $(STAMP)
	$(PY) scripts/build_compiled.py --check -- $(PYTEST_ARGS)

# The side-by-side table (tcpstack, the kernel with the same app, nginx) into the bench section
# of docs/PERFORMANCE.md, about 15 minutes; e.g. `make bench BENCH_ARGS="--quick --runs 1"`.
BENCH_ARGS ?=
bench: deps
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) scripts/bench.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache build
