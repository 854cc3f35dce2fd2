"""benchmarks/bench_llm.py on its smallest size: every stage timed, the ratios and the extrapolation printed."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_llm.py"


def run_bench(*argv: str):
    """benchmarks/bench_llm.py's module, after running its main with ``argv``."""
    pytest.importorskip("transformers", reason="needs transformers (the [minilm] extra)")
    spec = importlib.util.spec_from_file_location("bench_llm", BENCH)
    bench = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = bench
    try:
        spec.loader.exec_module(bench)
        bench.main(list(argv))
    finally:
        del sys.modules[spec.name]
    return bench


def test_bench_llm_times_every_stage_and_extrapolates(capsys):
    bench = run_bench("--sizes", "10M", "--samples", "2", "--seq-len", "8")
    out = capsys.readouterr().out
    for stage in bench.STAGES:
        assert f"10M {stage}: " in out
    row = next(line.split() for line in out.splitlines() if line.startswith("  10M     8.4M"))
    assert row[3] == "1.0" and all(float(x) > 0 for x in row[2::2])  # the forward pass is the unit
    assert any(line.split()[:1] == ["70B"] for line in out.splitlines())


def test_bench_llm_measures_the_stages_asked_for(capsys):
    """A stage alone (the probe of a size whose other stages were measured apart), with the
    forward pass, the unit of its ratio."""
    run_bench("--sizes", "10M", "--samples", "2", "--seq-len", "8", "--stages", "probe")
    out = capsys.readouterr().out
    assert "10M forward: " in out and "10M probe: " in out
    assert "10M calibrate: " not in out and "10M evaluation: " not in out
    with pytest.raises(SystemExit) as info:
        run_bench("--sizes", "10M", "--stages", "evaluation")
    assert info.value.code == 2 and "--stages evaluation needs calibrate" in capsys.readouterr().err
