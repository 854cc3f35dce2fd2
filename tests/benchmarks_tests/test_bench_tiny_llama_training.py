"""benchmarks/bench_tiny_llama_training.py for one step: both dtypes timed, float32 the unit, the
recipe's step count left as it was."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_tiny_llama_training.py"


@pytest.mark.slow  # four steps of the 10 M model: 10-30 s, minutes without bfloat16 instructions
def test_bench_tiny_llama_training_times_both_dtypes(capsys):
    pytest.importorskip("transformers", reason="needs the [llm] extra")
    from mpq._examples import causal_lm

    steps = causal_lm.TRAIN_STEPS
    spec = importlib.util.spec_from_file_location("bench_tiny_llama_training", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    try:
        spec.loader.exec_module(bench)
        bench.main(["--steps", "1", "--rounds", "1"])
    finally:
        del sys.modules[spec.name]
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if "CPU s/step" in line}
    assert set(rows) == {"float32", "bfloat16"}
    assert rows["float32"][4] == "1.00x" and float(rows["bfloat16"][1]) > 0
    assert causal_lm.TRAIN_STEPS == steps
