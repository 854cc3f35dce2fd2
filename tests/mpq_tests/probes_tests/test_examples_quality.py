"""Probe quality on the built-in examples (slow): omega ranks (layer, candidate) pairs like measured."""

from __future__ import annotations

import pytest
from scipy.stats import spearmanr

from mpq._examples import make_example
from mpq._omega import omega
from mpq._probes import ProbeSettings, probe
from mpq.exceptions import ProbeError

CANDIDATES = ("w3a8", "w4a8", "w8a8", "w8a4", "w4a16", "wfp8afp8", "wmxfp4amxfp8")


@pytest.mark.slow
def test_digits_cnn_hessian_omega_ranks_like_the_measured_loss_increase():
    task = make_example("digits-cnn")  # trains for about a minute on first use, then cached
    table = probe(task, ["hessian_w", "hessian_a", "measured"], settings=ProbeSettings(candidates=CANDIDATES))
    predicted = omega(task, table, CANDIDATES)
    measured = omega(task, table, CANDIDATES, probe="measured")
    assert spearmanr(predicted["omega"], measured["omega"]).statistic >= 0.8


@pytest.mark.slow
@pytest.mark.usefixtures("minilm_extra")
def test_minilm_small_probe_runs_without_hessian_vector_products():
    task = make_example("minilm-small")
    table = probe(task, ["hessian_w", "fisher_w"], settings=ProbeSettings(max_samples=30))
    hessian = table[table["probe"] == "hessian_w"]
    assert len(hessian) == 39 and (hessian["value"] > 0).all()
    # Self-distillation at the float weights: dL/dz = 0, so the Hessian is the Gauss-Newton matrix
    # (no residual HVP), and the empirical Fisher is exactly zero, which the probe refuses.
    assert (hessian["hvps"] == 0).all()
    with pytest.raises(ProbeError, match="every efisher trace is exactly 0"):
        probe(task, ["efisher_w"])
