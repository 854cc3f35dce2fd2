"""benchmarks/bench_probe.py --pyhessian: the missing package is one line, and PyHessian's per-layer
trace (when the package is installed under $PYHESSIAN_PATH, default /tmp/pyhessian) is the layer's own."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import mpq

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_probe.py"
PYHESSIAN = Path(os.environ.get("PYHESSIAN_PATH", "/tmp/pyhessian"))


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_probe", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missing_pyhessian_is_one_line_and_exit_2(bench, tmp_path, capsys):
    with pytest.raises(SystemExit) as exited:
        bench.against_pyhessian(str(tmp_path), ["digits-cnn"], 0, None)
    assert exited.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.strip().splitlines() == [
        f"bench_probe: no pyhessian package under {tmp_path}; install it there with "
        f"'pip install --no-deps pyhessian --target {tmp_path}'."
    ]


def two_layer_least_squares() -> mpq.Task:
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 3), nn.Tanh(), nn.Linear(3, 2)).eval()
    generator = torch.Generator().manual_seed(4)
    x, y = torch.randn(16, 4, generator=generator), torch.randn(16, 2, generator=generator)

    def squared_distance(output, target):
        return ((output - target) ** 2).sum(dim=1).mean()

    return mpq.Task("two-layer", model, [(x[:8], y[:8]), (x[8:], y[8:])], squared_distance)


def exact_weight_trace(task: mpq.Task, index: int) -> float:
    """tr d^2 L / dW^2 of layer ``index``'s weight, L the sample-weighted mean of the batch losses."""
    weight = task.model[index].weight
    names = {name: p for name, p in task.model.named_parameters()}
    key = next(name for name, p in names.items() if p is weight)

    def loss(w):
        total = 0.0
        for x, y in task.calibration:
            out = torch.func.functional_call(task.model, {**names, key: w}, (x,))
            total = total + task.loss_fn(out, y) * len(x) / 16
        return total

    hessian = torch.func.hessian(loss)(weight.detach())
    return float(hessian.detach().reshape(weight.numel(), weight.numel()).diagonal().sum())


@pytest.mark.slow
@pytest.mark.skipif(not (PYHESSIAN / "pyhessian").is_dir(), reason=f"no pyhessian under {PYHESSIAN}")
def test_pyhessian_per_layer_estimates_each_layer_alone_and_restores_requires_grad(bench):
    sys.path.insert(0, str(PYHESSIAN))
    try:
        from pyhessian import hessian
    finally:
        sys.path.remove(str(PYHESSIAN))
    task = two_layer_least_squares()
    result = bench.pyhessian_per_layer(task, hessian, mpq.ProbeSettings(max_samples=3000), None)
    assert result["converged"] == result["targets"] == 2
    for index, layer in ((0, "0"), (2, "2")):
        value, relative = result["traces"][layer]
        exact = exact_weight_trace(task, index)
        assert abs(value - exact) <= 4 * relative * abs(value), (layer, value, exact)
    assert all(p.requires_grad for p in task.model.parameters())
