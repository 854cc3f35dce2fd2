"""The measured frontier's pieces: dominance on measurement, the allowed drop, the resolution of
the measured metric. (The strategies that measure it: ``test_strategies.py``.)"""

import numpy as np
import pandas as pd
import pytest

from mpq._measured_frontier import absolute_drop, check_drop, dominated, unresolved
from mpq.exceptions import InvalidParameterError


def test_dominated_on_measurement():
    frontier = pd.DataFrame(
        {
            "point": [0, 1, 2, 3, 4],
            "latency_s": [1.0, 2.0, 2.0, 3.0, 0.5],
            "measured_metric": [0.9, 0.8, 0.95, 0.95, np.nan],
        }
    )
    result = dominated(frontier, ["latency_s"])
    # 1 is beaten by 0 (cheaper and better); 3 by 2 (cheaper, equal); 4 not validated
    assert result.tolist() == [False, True, False, True, pd.NA]


def test_drop_parsing_and_checks():
    assert absolute_drop(0.01, 0.98) == 0.01
    assert absolute_drop("1%", 0.5) == pytest.approx(0.005)
    for bad in (-0.1, "100%", "x%", "1", float("nan"), True):
        with pytest.raises(InvalidParameterError, match="The 'max_drop' parameter of search"):
            check_drop(bad)


def test_unresolved_spread_gets_a_reason_not_a_rho():
    # an accuracy over 500 images moves in steps of 0.002: a spread of 3 steps ranks nothing
    steps = pd.Series([0.982, 0.984, 0.986, 0.984, float("nan")])
    reason = unresolved(steps, "accuracy")
    assert reason == (
        "no rank correlation: the measured accuracy spans 0.004, 2 steps of the 0.002 the held-out set resolves "
        "(3 or fewer)"
    )
    assert unresolved(pd.Series([0.10, 0.62, 0.97, 0.98]), "accuracy") is None  # a real spread
    assert unresolved(pd.Series([0.98, 0.98, float("nan")]), "accuracy") == (
        "no rank correlation: every point measures the same accuracy, 0.98"
    )
    assert unresolved(pd.Series([0.98]), "accuracy") is None  # one point: nothing to rank
    # two values: the step is what the held-out set resolves (1/497), not their difference
    assert unresolved(pd.Series([55 / 497, 492 / 497, 492 / 497]), "accuracy") is None
    assert unresolved(pd.Series([489 / 497, 490 / 497]), "accuracy") == (
        "no rank correlation: the measured accuracy spans 0.002012, the least difference the held-out set resolves"
    )
    assert unresolved(pd.Series([0.1234567891, 0.1334567891]), "mean IoU") is None  # continuous: no step known
    # accuracies as float32 means: 3 steps apart, though the difference reads 3.00001 steps
    float32 = pd.Series([0.9798792600631714, 0.98591548204422])
    assert unresolved(float32, "accuracy").endswith(
        "spans 0.006036, 3 steps of the 0.002012 the held-out set resolves (3 or fewer)"
    )


def test_a_run_whose_spread_is_unresolved_stores_no_rho(tmp_path):
    import mpq
    from mpq._search.pipeline import _spearman

    frontier = pd.DataFrame(
        {"predicted_loss": [1e-5, 2e-5, 3e-5, 4e-5], "measured_metric": [0.984, 0.982, 0.984, 0.986]}
    )
    assert _spearman(frontier, float_metric=0.986) is None
    resolved = frontier.assign(measured_metric=[0.98, 0.90, 0.70, 0.50])
    assert _spearman(resolved, float_metric=0.986) == pytest.approx(1.0)
    run = mpq.Run(
        id=1,
        db="sqlite://",
        status="done",
        record={"metric_name": "accuracy", "spearman": None},
        frontier=frontier,
        assignments=pd.DataFrame(),
        tables={},
    )
    assert run.rank_note.startswith("no rank correlation: the measured accuracy spans 0.004")
    stored = mpq.Run(**{**run.__dict__, "frontier": resolved, "record": {"metric_name": "accuracy", "spearman": 1.0}})
    assert stored.rank_note == "Spearman(predicted loss, measured drop) 1.000"
