"""The measured frontier's pieces on synthetic tables whose true metric is known."""

import itertools

import numpy as np
import pandas as pd
import pytest

from mpq._measured_frontier import DropSearch, absolute_drop, check_drop, dominated, unresolved
from mpq.exceptions import InvalidParameterError

CANDIDATES = ("w2a2", "w4a4", "w8a8")


def _tables(seed: int = 0, layers: int = 5):
    """Omega and cost tables, and a true metric that the proxy misjudges on one layer."""
    rng = np.random.default_rng(seed)
    rows = []
    true_damage = {}
    for i in range(layers):
        size = rng.uniform(1, 4)
        for bits, cand in zip((2, 4, 8), CANDIDATES):
            noise = size * 4.0 ** -(bits / 2)
            rows.append((f"l{i}", cand, noise, size * bits))
            # layer l0 is far more sensitive at 2 bits than the proxy says (it collapses)
            true_damage[f"l{i}", cand] = noise * (40.0 if (i == 0 and bits == 2) else 1.0) * 0.05
    table = pd.DataFrame(rows, columns=["layer", "candidate", "omega", "latency_s"])
    return table[["layer", "candidate", "omega"]], table[["layer", "candidate", "latency_s"]], true_damage


def _truth(assignment, true_damage):
    return 1.0 - sum(true_damage[layer, cand] for layer, cand in assignment.items())


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


def _search(om, costs, damage, target, max_evals):
    calls = []

    def measure(solution):
        calls.append(dict(solution.assignment))
        return _truth(solution.assignment, damage)

    search = DropSearch(om, costs, "latency_s", {}, target=target, max_evals=max_evals, spent=1, measure=measure)
    return search, calls


def _proxy(om, costs):
    import solvers

    return solvers.frontier(om, costs, ["latency_s"], max_points=64)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cheapest_within_drop_finds_a_configuration_within_it_and_cheaper_than_the_proxy_bisection(seed):
    om, costs, damage = _tables(seed)
    target = 1.0 - 0.05
    search, calls = _search(om, costs, damage, target, max_evals=40)
    found = search.cheapest_within_drop(_proxy(om, costs))
    assert _truth(found.assignment, damage) >= target
    assert search.spent - 1 == len(calls) <= 39 and len({tuple(sorted(c.items())) for c in calls}) == len(calls)
    # brute force: the cheapest configuration within the drop
    layers = sorted(om["layer"].unique())
    cost = costs.set_index(["layer", "candidate"])["latency_s"]
    feasible = [
        sum(cost[layer, cand] for layer, cand in zip(layers, combo))
        for combo in itertools.product(CANDIDATES, repeat=len(layers))
        if _truth(dict(zip(layers, combo)), damage) >= target
    ]
    bisect_only, _ = _search(om, costs, damage, target, max_evals=40)
    bisected = bisect_only.bisect(_proxy(om, costs))
    assert found.costs["latency_s"] <= bisected.costs["latency_s"]
    assert found.costs["latency_s"] <= min(feasible) * 1.25  # near the true optimum


def test_evaluations_stop_at_max_evals_and_nothing_is_measured_twice():
    om, costs, damage = _tables(3)
    search, calls = _search(om, costs, damage, 1.0 - 0.05, max_evals=6)
    search.cheapest_within_drop(_proxy(om, costs))
    assert len(calls) == 5 and search.left == 0
    again, calls_again = _search(om, costs, damage, 1.0 - 0.05, max_evals=6)
    again.replay = {key: metric for key, (_, metric) in search.known.items()}  # a resumed run
    again.cheapest_within_drop(_proxy(om, costs))
    assert calls_again == [] and again.spent == search.spent and again.known == search.known


@pytest.mark.parametrize("stopped_after", [3, 8, 11, 13])  # in the bisection, covering, refinement
def test_a_search_interrupted_anywhere_replays_to_the_choices_of_one_never_interrupted(stopped_after):
    om, costs, damage = _tables(4)
    proxy = _proxy(om, costs)

    def phases(search):  # as a run's: bisection and covering of the proxy, then refinement
        search.target = 1.0 - 0.05
        search.cover(proxy[proxy.index(search.bisect(proxy)) :], 4)
        search.refine(extra=5, pool=proxy)

    uninterrupted, calls = _search(om, costs, damage, None, max_evals=10**6)
    phases(uninterrupted)
    assert len(calls) > stopped_after

    interrupted, _ = _search(om, costs, damage, None, max_evals=10**6)
    measure = interrupted.measure

    def measure_then_stop(solution):
        if interrupted.spent - 1 == stopped_after:
            raise KeyboardInterrupt
        return measure(solution)

    interrupted.measure = measure_then_stop
    with pytest.raises(KeyboardInterrupt):
        phases(interrupted)
    resumed, calls_resumed = _search(om, costs, damage, None, max_evals=10**6)
    resumed.replay = {key: metric for key, (_, metric) in interrupted.known.items()}
    phases(resumed)
    assert list(resumed.known.items()) == list(uninterrupted.known.items())  # the same, in the same order
    assert calls_resumed == calls[stopped_after:] and resumed.spent == uninterrupted.spent and not resumed.replay


def test_refine_extends_the_measured_frontier():
    om, costs, damage = _tables(4)
    search, calls = _search(om, costs, damage, None, max_evals=10**6)
    start = _proxy(om, costs)[-1]
    search.metric(start)
    search.refine(extra=8, pool=[])
    assert len(calls) == 9
    points = pd.DataFrame([(c, m) for c, m in search.known.values()], columns=["latency_s", "measured_metric"])
    assert (~dominated(points, ["latency_s"]).astype(bool)).sum() >= 3  # the walk added non-dominated points


def test_unresolved_spread_gets_a_reason_not_a_rho():
    # an accuracy over 500 images moves in steps of 0.002: a spread of 3 steps ranks nothing
    steps = pd.Series([0.982, 0.984, 0.986, 0.984, float("nan")])
    reason = unresolved(steps, "accuracy")
    assert reason == (
        "no rank correlation: the measured accuracy spans 0.004, within 3 steps of the 0.002 the held-out set resolves"
    )
    assert unresolved(pd.Series([0.10, 0.62, 0.97, 0.98]), "accuracy") is None  # a real spread
    assert unresolved(pd.Series([0.98, 0.98]), "accuracy") is None  # one level: nothing to say here


def test_a_run_whose_spread_is_unresolved_stores_no_rho(tmp_path):
    import mpq
    from mpq._search import _spearman

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


@pytest.mark.parametrize("seed", [0, 1])
def test_evaluations_started_ahead_change_nothing_that_is_measured(seed):
    om, costs, damage = _tables(seed)
    proxy = _proxy(om, costs)
    one, calls = _search(om, costs, damage, 1.0 - 0.05, max_evals=20)
    one.cover(proxy, 6)
    one.cheapest_within_drop(proxy)
    wide, wide_calls = _search(om, costs, damage, 1.0 - 0.05, max_evals=20)
    handed = []
    wide.width, wide.ahead = 4, handed.append
    wide.cover(proxy, 6)
    wide.cheapest_within_drop(proxy)
    assert wide_calls == calls and wide.known == one.known  # the same configurations, in the same order
    assert handed and all(1 <= len(group) <= 4 for group in handed)
    # each group leads with the configuration measured next, then ones that may be measured after it
    measured = [tuple(sorted(c.items())) for c in calls]
    assert all(tuple(sorted(group[0].assignment.items())) in measured for group in handed)
    assert any(len(group) > 1 for group in handed)
