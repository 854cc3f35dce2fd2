"""A layer at a maximum of the loss: the negative trace is reported, warned about, and not clamped."""

from __future__ import annotations

import probe_cases
import pytest

from mpq._omega import omega
from mpq._probes import ProbeSettings, probe
from mpq.exceptions import SensitivityWarning


@pytest.mark.parametrize("estimator", ["split", "hutchinson"])
def test_negative_trace_is_reported_as_is_with_a_warning_naming_the_layer(estimator):
    task = probe_cases.saddle_task()
    exact = probe_cases.exact_traces(task)[("w", "0")]
    assert exact < 0
    with pytest.warns(SensitivityWarning, match=r"negative trace estimates: hessian_w 0 \(-"):
        table = probe(task, ["hessian_w"], settings=ProbeSettings(estimator=estimator, max_samples=3000, seed=5))
    row = table.iloc[0]
    assert row["value"] < 0 and row["converged"]
    assert probe_cases.within(row["value"], row["stderr"], exact)


def test_omega_counts_a_negative_trace_as_zero_and_says_so():
    task = probe_cases.saddle_task()
    with pytest.warns(SensitivityWarning):
        table = probe(task, ["hessian_w"], settings=ProbeSettings(max_samples=400))
    with pytest.warns(SensitivityWarning, match="negative traces counted as 0 in omega: hessian_w 0"):
        result = omega(task, table, ["w4a8", "w8a8"])
    assert (result["omega"] == 0).all()
    assert (result["weight_sq_err"] > 0).all()
