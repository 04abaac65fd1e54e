# tcpstack: the two commands a newcomer runs are `make demo` and `make test` (as root).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: all deps system-deps test unit lint demo bench clean

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

lint: $(STAMP)
	$(VENV)/bin/ruff check tcpstack tests scripts
	$(VENV)/bin/mypy

demo: deps
	PATH="$(abspath $(VENV))/bin:$$PATH" bash scripts/demo.sh

bench: deps
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) scripts/bench.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
