"""benchmarks/bench_cost_model.py --runtime onnxruntime on a small MLP: each layer's exported node
unit timed in ONNX Runtime."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mpq

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def bench():
    pytest.importorskip("onnxruntime", reason="needs the [export] extra: pip install -e '.[export]'")
    sys.path.insert(0, str(BENCHMARKS))  # as when run as a script
    spec = importlib.util.spec_from_file_location("bench_cost_model", BENCHMARKS / "bench_cost_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.path.remove(str(BENCHMARKS))


def mlp_task() -> mpq.Task:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    x = torch.randn(16, 64)
    return mpq.Task("mlp", model, [(x, torch.zeros(16, dtype=torch.long))], nn.functional.cross_entropy)


def test_each_layer_is_timed_as_its_exported_integer_or_float_node_unit(bench):
    table = bench.measure_onnxruntime(mlp_task(), ["w8a8", "wfp32afp32"], mpq.QuantizerSettings(), 1, 1, 3)
    assert len(table) == 6 and (table["latency_min_s"] >= 0).all()
    kernels = table.set_index(["layer", "candidate"])["kernel"]
    # The integer layer runs ONNX Runtime's integer GEMM after a quantize node; the float one has neither.
    assert "MatMulIntegerToFloat" in kernels[("0", "w8a8")] and "QuantizeLinear" in kernels[("0", "w8a8")]
    assert "Integer" not in kernels[("0", "wfp32afp32")] and "Quantize" not in kernels[("0", "wfp32afp32")]
    # Layers 0 and 2 share one shape key: timed once, the same row.
    times = table.set_index(["layer", "candidate"])["latency_s"]
    assert times[("0", "w8a8")] == times[("2", "w8a8")] and times[("0", "w8a8")] != times[("4", "w8a8")]
