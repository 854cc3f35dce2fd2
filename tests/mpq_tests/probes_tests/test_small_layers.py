"""Small layers: exact traces where sampling them would cost more, and the sampling of the rest."""

from __future__ import annotations

import pandas as pd
import probe_cases
import pytest
import torch
from torch import nn

import mpq
from mpq._layers import layers
from mpq._probes import ProbeCheckpoint, ProbeSettings, probe
from mpq._probes.exact import hessian_traces
from mpq._probes.graph import LayerGraph, calibration_batches

# The sampled keys of these tests are meant to stay above the tolerance.
pytestmark = pytest.mark.filterwarnings("ignore::mpq.exceptions.SensitivityWarning")

# Hopeless sampling (a 1e-6 tolerance) after two samples: every target within the limit is switched.
ALL_EXACT = ProbeSettings(tolerance=1e-6, min_samples=2, max_samples=10**6, exact_max_params=10**4)


@pytest.fixture(scope="module")
def untrained_reference():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # module scope: before conftest's per-test fixture
    try:
        task = probe_cases.untrained_cnn_task()
        calls = []
        table = probe(task, ["hessian_w"], progress=lambda *a: calls.append(a[2]))
    finally:
        torch.set_num_threads(threads)
    return table, calls


def test_untrained_cnn_converges_on_every_layer_well_before_the_cap(untrained_reference):
    table, _ = untrained_reference
    rows = table.set_index("layer")
    assert list(rows["n_params"]) == [72, 768, 36]
    assert rows["converged"].all()
    # The two small layers exactly (stderr 0, one unit vector per weight), the large one sampled.
    assert list(rows["stderr"][["0", "6"]]) == [0.0, 0.0] and list(rows["n_samples"][["0", "6"]]) == [72, 36]
    assert 10 <= rows.loc["2", "n_samples"] <= 100 and rows.loc["2", "stderr"] <= 0.05 * rows.loc["2", "value"]
    exact = probe_cases.exact_traces(probe_cases.untrained_cnn_task(), kinds=("w",), only=("0", "6"))
    for layer in ("0", "6"):
        assert rows.loc[layer, "value"] == pytest.approx(exact[("w", layer)], rel=1e-5)
    # The HVPs count the exact traces: (72 + 36) unit vectors on each of 4 batches.
    assert rows["hvps"].iloc[0] >= (72 + 36) * 4


@pytest.mark.parametrize("estimator", ["split", "hutchinson"])
@pytest.mark.parametrize("case", ["tanh_mlp_task", "tiny_cnn_task"])
def test_exact_hessian_traces_equal_brute_force(case, estimator):
    task = getattr(probe_cases, case)()
    settings = ProbeSettings(**{**vars(ALL_EXACT), "estimator": estimator})
    table = probe(task, ["hessian_w", "hessian_a"], settings=settings)
    exact = probe_cases.exact_traces(task)
    assert len(table) == len(exact)
    for row in table.itertuples():
        assert row.stderr == 0 and row.converged and row.n_samples == row.n_params, row
        assert row.value == pytest.approx(exact[(row.probe[-1], row.layer)], rel=1e-5, abs=1e-9), row


@pytest.mark.parametrize(
    ("probe_name", "sampler", "form"),
    [
        ("fisher_w", "gauss_newton", "hessian"),
        ("fisher_w", "categorical", "hessian"),
        ("efisher_w", "gauss_newton", "efisher"),
        ("hessian_w", "gauss_newton", "hessian"),
    ],
)
def test_exact_traces_equal_the_closed_form(softmax_task, probe_name, sampler, form):
    closed = probe_cases.softmax_regression_traces(softmax_task)[form]
    settings = ProbeSettings(**{**vars(ALL_EXACT), "fisher_sampler": sampler})
    row = probe(softmax_task, [probe_name], settings=settings).iloc[0]
    assert row["stderr"] == 0 and row["n_samples"] == 15
    assert row["value"] == pytest.approx(closed, rel=1e-5)


def test_exact_fisher_input_traces_equal_the_gauss_newton_brute_force():
    # Least squares: the Fisher (Gauss-Newton) is the Hessian, tr d^2 l_n / dx_n^2 = 2 ||W||_F^2.
    task = probe_cases.linear_regression_task()
    row = probe(task, ["fisher_a"], settings=ALL_EXACT).iloc[0]
    assert row["stderr"] == 0
    assert row["value"] == pytest.approx(float(2 * (task.model[0].weight.detach().double() ** 2).sum()), rel=1e-5)


def test_exact_max_params_zero_samples_every_layer(softmax_task):
    table = probe(
        softmax_task,
        ["hessian_w"],
        settings=ProbeSettings(**{**vars(ALL_EXACT), "exact_max_params": 0, "max_samples": 40}),
    )
    assert table.iloc[0]["n_samples"] == 40 and table.iloc[0]["stderr"] > 0


def test_samples_coupled_in_the_model_leave_the_input_trace_to_the_sampler():
    class Centre(nn.Module):
        def forward(self, x):
            return x - x.mean(0, keepdim=True)  # couples the samples of a batch

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), Centre(), nn.Tanh(), nn.Linear(4, 2)).eval()
    x, y = torch.randn(8, 3), torch.randint(0, 2, (8,))
    task = mpq.Task("coupled", model, [(x, y)], nn.functional.cross_entropy)
    graph = LayerGraph(task, layers(model, x))
    batch = calibration_batches(task.calibration, None)[0]
    wanted = {("w", "0"), ("a", "0"), ("w", "3")}
    values, _ = hessian_traces(graph.run(batch, ["w", "a"]), wanted, batch.size)
    assert set(values) == {("w", "0"), ("w", "3")}  # the input of layer 0 is coupled: sampled
    table = probe(
        task,
        ["hessian_a"],
        settings=ProbeSettings(estimator="hutchinson", tolerance=1e-6, min_samples=2, max_samples=30),
    )
    assert (table["n_samples"] == 30).all()


@pytest.mark.parametrize("stop_after", [5, 11, 12])  # before the switch to exact traces, at it, after it
def test_resumed_after_exact_traces_equals_uninterrupted(untrained_reference, tmp_path, stop_after):
    reference, reference_calls = untrained_reference
    assert any("2 exact traces" in c for c in reference_calls)
    task = probe_cases.untrained_cnn_task()
    checkpoint = ProbeCheckpoint(tmp_path)
    calls = []

    def stop(done, total, message):
        calls.append(message)
        if len(calls) == stop_after:
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        probe(task, ["hessian_w"], progress=stop, checkpoint=checkpoint)
    resumed_calls = []
    resumed = probe(task, ["hessian_w"], checkpoint=checkpoint, progress=lambda *a: resumed_calls.append(a[2]))
    pd.testing.assert_frame_equal(resumed.drop(columns="seconds"), reference.drop(columns="seconds"))
    assert calls + resumed_calls == reference_calls
