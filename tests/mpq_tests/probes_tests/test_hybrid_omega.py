"""The hybrid omega: the measured loss increase of coarse candidates, the quadratic model elsewhere."""

import pytest

import mpq
from mpq._search.plan import _measured_candidates

FAST = dict(tolerance=0.3, min_samples=2, max_samples=4)


@pytest.mark.filterwarnings("ignore::mpq.exceptions.SensitivityWarning")
def test_measured_rows_replace_the_quadratic_prediction_of_their_pairs(tiny_task):
    hybrid = mpq.ProbeSettings(probes=("hessian_w", "hessian_a", "measured"), candidates=("w2a2",), **FAST)
    sensitivity = mpq.probe(tiny_task, settings=hybrid)
    assert set(sensitivity.loc[sensitivity.probe == "measured", "candidate"]) == {"w2a2"}
    mixed = mpq.omega(tiny_task, sensitivity, ["w2a2", "w8a8"]).set_index(["layer", "candidate"])
    traces = sensitivity[sensitivity.probe != "measured"]
    quadratic = mpq.omega(tiny_task, traces, ["w2a2", "w8a8"]).set_index(["layer", "candidate"])
    measured = sensitivity[sensitivity.probe == "measured"].set_index(["layer", "candidate"])["value"]
    for (layer, candidate), row in mixed.iterrows():
        if candidate == "w2a2":
            assert row["omega"] == pytest.approx(measured[layer, candidate])
        else:
            assert row["omega"] == pytest.approx(quadratic.loc[(layer, candidate), "omega"])
    assert mixed["omega_w"].tolist() == pytest.approx(quadratic["omega_w"].tolist())  # kept for reference


def test_the_hybrid_measures_only_the_coarse_candidates_of_the_search():
    hybrid = mpq.ProbeSettings(probes=("hessian_w", "hessian_a", "measured"))
    assert _measured_candidates(hybrid, ["w2a2", "w4a4", "w8a8", "w3a8"]).candidates == ("w2a2", "w3a8")
    assert _measured_candidates(hybrid, ["w4a8", "w8a8"]).probes == ("hessian_w", "hessian_a")  # nothing coarse
    alone = mpq.ProbeSettings(probes=("measured",))
    assert _measured_candidates(alone, ["w4a8", "w8a8"]).candidates == ("w4a8", "w8a8")
    given = mpq.ProbeSettings(probes=("measured",), candidates=("w4a8",))
    assert _measured_candidates(given, ["w4a8", "w8a8"]) is given
