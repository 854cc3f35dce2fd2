"""Traces against closed forms: softmax regression (shared/reference/hardware.md) and least squares."""

from __future__ import annotations

import probe_cases
import pytest
import torch

from mpq._probes import ProbeSettings, probe


def _value(table, probe_name: str, layer: str = "0"):
    row = table[(table["probe"] == probe_name) & (table["layer"] == layer)].iloc[0]
    return row["value"], row["stderr"], row


@pytest.mark.parametrize("estimator", ["split", "hutchinson"])
def test_softmax_regression_hessian_trace_matches_the_closed_form(softmax_task, estimator):
    exact = probe_cases.softmax_regression_traces(softmax_task)["hessian"]
    table = probe(softmax_task, ["hessian_w"], settings=ProbeSettings(estimator=estimator, max_samples=1500))
    value, stderr, row = _value(table, "hessian_w")
    assert row["converged"] and stderr <= 0.05 * value
    assert probe_cases.within(value, stderr, exact)


@pytest.mark.parametrize("sampler", ["gauss_newton", "categorical"])
def test_sampled_fisher_equals_the_hessian_in_expectation(softmax_task, sampler):
    exact = probe_cases.softmax_regression_traces(softmax_task)["hessian"]
    settings = ProbeSettings(fisher_sampler=sampler, max_samples=1500, seed=3, exact_max_params=0)  # sampled only
    table = probe(softmax_task, ["fisher_w"], settings=settings)
    value, stderr, row = _value(table, "fisher_w")
    assert row["converged"]
    assert probe_cases.within(value, stderr, exact)
    # No Hessian-vector product: one backward pass per batch (2) and noise draw (2) in every sample.
    assert row["hvps"] == 0 and row["backwards"] == row["n_samples"] * 2 * 2


def test_empirical_fisher_is_biased_and_matches_its_own_closed_form(softmax_task):
    exact = probe_cases.softmax_regression_traces(softmax_task)
    table = probe(softmax_task, ["efisher_w"], settings=ProbeSettings(max_samples=1500))
    value, stderr, _ = _value(table, "efisher_w")
    assert probe_cases.within(value, stderr, exact["efisher"])
    # ... and it is not the Hessian trace: they differ by many standard errors.
    assert abs(value - exact["hessian"]) > 10 * stderr


def test_softmax_regression_input_trace_matches_brute_force(softmax_task):
    # d^2 l_n / dx_n^2 = W^T (diag p - p p^T) W per sample.
    weight = softmax_task.model[0].weight.detach().double()
    x = torch.cat([b[0] for b in softmax_task.calibration]).double()
    p = torch.softmax(x @ weight.T, dim=1)
    per_sample = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
    exact = float(torch.einsum("ki,nkl,li->n", weight, per_sample, weight).mean())
    table = probe(softmax_task, ["hessian_a"], settings=ProbeSettings(max_samples=1500))
    value, stderr, row = _value(table, "hessian_a")
    assert row["converged"] and row["n_params"] == 5
    assert probe_cases.within(value, stderr, exact)


def test_least_squares_traces_are_exact_for_gauss_newton_noise():
    # L = mean_n ||W x_n + b - y_n||^2: tr d^2L/dW^2 = 2 K mean ||x||^2, tr d^2 l_n/dx_n^2 = 2 ||W||_F^2.
    task = probe_cases.linear_regression_task()
    x = torch.cat([b[0] for b in task.calibration]).double()
    weight = task.model[0].weight.detach().double()
    exact_w = float(2 * weight.shape[0] * (x * x).sum(1).mean())
    exact_a = float(2 * (weight**2).sum())
    table = probe(task, ["hessian_w", "hessian_a", "fisher_w", "fisher_a"], settings=ProbeSettings(max_samples=1500))
    for name, exact in [("hessian_w", exact_w), ("fisher_w", exact_w), ("hessian_a", exact_a), ("fisher_a", exact_a)]:
        value, stderr, row = _value(table, name)
        assert row["converged"], name
        assert probe_cases.within(value, stderr, exact), (name, value, stderr, exact)
    # The loss is quadratic with dL/dz != 0 but z linear in W: the residual takes HVPs, which are exactly 0.
    assert _value(table, "hessian_w")[2]["hvps"] > 0
