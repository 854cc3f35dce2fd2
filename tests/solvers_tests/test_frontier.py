"""Frontier and knapsack-DP checks on instances too large to enumerate (float data), against
the HiGHS ILP."""

from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest
from solver_enumeration import random_tables

import solvers
import solvers._knapsack


@pytest.fixture(scope="module")
def layers120():
    return random_tables(np.random.default_rng(7), 120, 8, drop=0.1)


@pytest.fixture(scope="module")
def layers300():
    """300 layers of 4 sizes, 4 candidates: the DP merges free layers of equal option costs
    into one item. (8 candidates: the slow twin; HiGHS takes four times as long.)"""
    return random_tables(np.random.default_rng(5), 300, 4, sizes=4)


@pytest.fixture(scope="module")
def layers8():
    return random_tables(np.random.default_rng(3), 8, 4)


def budget_at(costs, column, fraction):
    per_layer = costs.groupby("layer")[column]
    low, high = per_layer.min().sum(), per_layer.max().sum()
    return low + fraction * (high - low)


@pytest.mark.parametrize("column", ["weight_bytes", "latency_s"])
def test_knapsack_dp_matches_highs_on_120_layers(layers120, column):
    omega, costs = layers120
    for fraction in (0.05, 0.3, 0.7):
        budget = {column: budget_at(costs, column, fraction)}
        dp = solvers.solve(omega, costs, budget)
        ilp = solvers.solve(omega, costs, budget, backend="highs")
        assert dp.costs[column] <= budget[column] * (1 + 1e-12)
        assert dp.predicted_loss == pytest.approx(ilp.predicted_loss, rel=1e-9, abs=0)
        assert dp.optimal and ilp.optimal


def test_dp_overflow_falls_back_to_the_ilp(layers120, monkeypatch, caplog):
    omega, costs = layers120
    budget = {"weight_bytes": budget_at(costs, "weight_bytes", 0.3)}
    expected = solvers.solve(omega, costs, budget).predicted_loss
    monkeypatch.setattr(solvers._knapsack, "_MAX_STATES", 0)
    with caplog.at_level(logging.INFO, logger="solvers"):
        solution = solvers.solve(omega, costs, budget)
    assert "overflowed" in caplog.text
    assert solution.predicted_loss == pytest.approx(expected, rel=1e-9)


def test_truncated_frontier_is_the_optimum_at_each_grid_budget(layers120):
    omega, costs = layers120
    with pytest.warns(solvers.TruncatedFrontierWarning, match="max_points=12"):
        points = solvers.frontier(omega, costs, ["weight_bytes"], max_points=12)
    assert len(points) == 12
    cost = np.array([p.costs["weight_bytes"] for p in points])
    loss = np.array([p.predicted_loss for p in points])
    assert np.all(np.diff(cost) > 0) and np.all(np.diff(loss) < 0)  # sorted, non-dominated
    grid = np.linspace(cost[0], cost[-1], 12)
    for j in (0, 5, 11):
        ilp = solvers.solve(omega, costs, {"weight_bytes": grid[j]}, backend="highs")
        assert loss[cost <= grid[j] * (1 + 1e-12)].min() == pytest.approx(ilp.predicted_loss, rel=1e-9)
    assert points[-1].predicted_loss == pytest.approx(solvers.solve(omega, costs).predicted_loss)


def test_objectives_may_name_the_loss(layers8):
    plain = solvers.frontier(*layers8, ["latency_s"])
    named = solvers.frontier(*layers8, ["predicted_loss", "latency_s"])
    assert plain == named and len(plain) > 3


def test_budget_on_the_objective_cuts_the_frontier(layers8):
    full = solvers.frontier(*layers8, ["weight_bytes"])
    limit = full[len(full) // 2].costs["weight_bytes"]
    cut = solvers.frontier(*layers8, ["weight_bytes"], {"weight_bytes": limit})
    assert cut == [p for p in full if p.costs["weight_bytes"] <= limit]


def test_ilp_epsilon_constraint_equals_the_merge(layers8):
    merge = solvers.frontier(*layers8, ["latency_s"])
    ilp = solvers.frontier(*layers8, ["latency_s"], backend="highs")
    assert [p.assignment for p in ilp] == [p.assignment for p in merge]


def test_max_budget_removes_pairs(layers8):
    omega, costs = layers8
    limit = costs.groupby("layer")["sram_bytes"].min().max()
    points = solvers.frontier(omega, costs, ["weight_bytes"], {"sram_bytes": limit})
    assert points and all(p.costs["sram_bytes"] <= limit for p in points)


def test_three_objectives_warn_and_stay_non_dominated(layers8):
    with pytest.warns(solvers.ApproximateFrontierWarning):
        points = solvers.frontier(*layers8, ["weight_bytes", "latency_s"], max_points=60)
    values = np.array([[p.predicted_loss, p.costs["weight_bytes"], p.costs["latency_s"]] for p in points])
    assert 10 < len(points) <= 60
    for row in values:
        dominated = np.all(values <= row, axis=1) & np.any(values < row, axis=1)
        assert not dominated.any()
    assert list(values[:, 1]) == sorted(values[:, 1])


def test_complete_frontier_emits_no_warning(layers8):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        points = solvers.frontier(*layers8, ["weight_bytes"], max_points=10_000)
    assert all(p.optimal and p.status == "optimal" for p in points)


@pytest.mark.parametrize("column", ["weight_bytes", "latency_s"])
def test_anchor_costs_add_the_exact_optimum_at_each_cost_to_a_truncated_frontier(layers120, column):
    omega, costs = layers120
    anchors = [budget_at(costs, column, f) for f in (0.13, 0.57)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
        plain = solvers.frontier(omega, costs, [column], max_points=5)
        anchored = solvers.frontier(omega, costs, [column], max_points=5, anchor_costs=anchors)
    assert len(anchored) == len(plain) + 2
    for anchor in anchors:
        best = solvers.solve(omega, costs, {column: anchor})
        at_or_below = [p for p in anchored if p.costs[column] <= anchor * (1 + 1e-12)]
        assert min(p.predicted_loss for p in at_or_below) == pytest.approx(best.predicted_loss, rel=1e-9)
    losses = [p.predicted_loss for p in anchored]
    assert losses == sorted(losses, reverse=True)  # still sorted by cost, still non-dominated


def test_anchor_costs_are_checked(layers8):
    with pytest.raises(solvers.InvalidParameterError, match=r"The 'anchor_costs\[0\]' parameter of frontier"):
        solvers.frontier(*layers8, ["weight_bytes"], anchor_costs=[-1.0])


def check_grid_against_ilp(tables, column, count):
    """The frontier at `count` budgets against one HiGHS solve per budget: equal losses."""
    omega, costs = tables
    with pytest.warns(solvers.TruncatedFrontierWarning):
        points = solvers.frontier(omega, costs, [column], max_points=count)
    assert len(points) == count and all(p.optimal and p.gap == 0.0 for p in points)
    cost = np.array([p.costs[column] for p in points])
    loss = np.array([p.predicted_loss for p in points])
    for budget in np.linspace(cost[0], cost[-1], count):
        ilp = solvers.solve(omega, costs, {column: budget}, backend="highs")
        assert ilp.optimal
        assert loss[cost <= budget * (1 + 1e-12)].min() == pytest.approx(ilp.predicted_loss, rel=1e-9, abs=0)


def test_frontier_of_300_layers_equals_per_budget_ilp_solves(layers300):
    check_grid_against_ilp(layers300, "weight_bytes", 20)


@pytest.mark.slow
@pytest.mark.parametrize("column", ["weight_bytes", "latency_s"])
def test_frontier_of_300_layers_equals_per_budget_ilp_solves_slow(column):
    check_grid_against_ilp(random_tables(np.random.default_rng(5), 300, 8, sizes=4), column, 20)


def test_points_past_the_dp_cap_carry_a_proven_gap(layers120, monkeypatch):
    omega, costs = layers120
    monkeypatch.setattr(solvers._knapsack, "_MAX_STATES", 0)  # every DP overflows
    with pytest.warns(solvers.TruncatedFrontierWarning):
        points = solvers.frontier(omega, costs, ["weight_bytes"], max_points=8)
    unproven = [p for p in points if not p.optimal]
    assert unproven and all(p.status == "feasible" and p.gap > 0 for p in unproven)
    for point in points:
        exact = solvers.solve(omega, costs, {"weight_bytes": point.costs["weight_bytes"]})  # the ILP, past the cap
        assert exact.optimal
        # The gap is a bound: nothing within the point's cost beats its loss by more.
        assert exact.predicted_loss * (1 - 1e-9) <= point.predicted_loss <= exact.predicted_loss + point.gap + 1e-12


def test_layers_of_one_shape_enter_the_dp_as_few_items():
    """2000 layers of one size (an MoE's experts): the free layers of the DP share their option
    costs, so they merge into a few items, and the optimum still equals the ILP's."""
    omega, costs = random_tables(np.random.default_rng(9), 2000, 4, sizes=1)
    budget = {"weight_bytes": budget_at(costs, "weight_bytes", 0.3)}
    instance = solvers._solve.setup("solve", omega, costs, budget, (), None, "auto", None).instance()
    knapsack = solvers._knapsack.Knapsack(instance.loss, instance.costs["weight_bytes"], instance.valid)
    _, _, reduced, _ = knapsack._relaxation(budget["weight_bytes"])
    second = np.sort(reduced, axis=1)[:, 1]
    free = np.flatnonzero(second <= np.sort(second)[500])  # the 500 groups closest to the LP's choice
    assert len(knapsack._items(reduced, free, second[free].max())) < 50
    dp = solvers.solve(omega, costs, budget)
    assert dp.predicted_loss == pytest.approx(
        solvers.solve(omega, costs, budget, backend="highs").predicted_loss, rel=1e-9
    )
