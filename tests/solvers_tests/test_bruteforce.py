"""Property tests: `solve` and `frontier` against enumeration of every allocation.

Small random problems (<= 5 layers x <= 4 candidates, some pairs missing from the cost table,
random ties, pins and budgets). Values are multiples of 1/8, so every sum is exact and results
compare with `==`.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from solver_contract import needs_cbc
from solver_enumeration import MAXED, SUMMED, enumerate_allocations, meets, nondominated

import solvers

CANDIDATES = ["int2", "int4", "int8", "fp8"]
BACKEND_EXAMPLES = {"auto": 30, "highs": 25, "cbc": 10}
SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def problems(draw):
    n_layers = draw(st.integers(1, 5))
    n_candidates = draw(st.integers(2, 4))
    layers = [f"block.{i}-a b" for i in range(n_layers)]  # names PuLP would mangle
    cost = st.integers(0, 20)
    omega_rows, cost_rows = [], []
    for layer in layers:
        offered = draw(st.lists(st.sampled_from(CANDIDATES[:n_candidates]), min_size=n_candidates - 1, unique=True))
        missing = draw(st.sampled_from([None, *offered[1:]]))  # a pair the device does not run
        costed = [candidate for candidate in offered if candidate != missing]
        extra = draw(st.lists(st.sampled_from(CANDIDATES), max_size=1))  # cost rows omega lacks
        losses = draw(st.lists(st.integers(-8, 160), min_size=len(offered), max_size=len(offered)))
        weights = draw(st.lists(cost, min_size=len(offered), max_size=len(offered)))
        if draw(st.booleans()):  # mostly a real trade-off: dearer candidates lose less
            losses, weights = sorted(losses, reverse=True), sorted(weights)
        for candidate, loss in zip(offered, losses):
            omega_rows.append((layer, candidate, loss / 8))
        weight_of = dict(zip(offered, weights))
        for candidate in dict.fromkeys(costed + extra):
            cost_rows.append((layer, candidate, weight_of.get(candidate, 0), draw(cost) / 8, draw(cost)))
    omega = pd.DataFrame(omega_rows, columns=["layer", "candidate", "omega"])
    costs = pd.DataFrame(cost_rows, columns=["layer", "candidate", *SUMMED, *MAXED])
    ties = draw(st.lists(st.lists(st.sampled_from(layers), min_size=2, max_size=3), max_size=2))
    fixed = {}
    if draw(st.booleans()):
        layer = draw(st.sampled_from(layers))
        both = sorted(
            set(omega.loc[omega["layer"] == layer, "candidate"]) & set(costs.loc[costs["layer"] == layer, "candidate"])
        )
        fixed[layer] = draw(st.sampled_from(both))
    budgets = {}
    for name in draw(st.lists(st.sampled_from([*SUMMED, *MAXED]), unique=True, max_size=3)):
        per_layer = costs.groupby("layer")[name]
        low, high = (
            (per_layer.min().sum(), per_layer.max().sum())
            if name in SUMMED
            else (per_layer.min().max(), costs[name].max())
        )
        fraction = draw(st.integers(-1, 8)) / 8  # -1/8: just below the least achievable sum
        budgets[name] = max((low + fraction * (high - low + 1)) // 0.125 * 0.125, 0.125)
    return omega, costs, ties, fixed, budgets


def check_infeasible(error, allocations, budgets):
    assert error.budget in budgets and error.requested == budgets[error.budget]
    assert error.budget not in error.others and error.others.items() <= budgets.items()
    under_others = allocations[meets(allocations, error.others)]
    assert error.smallest_achievable == under_others[error.budget].min() > error.requested


def backends():
    """(backend, examples): the default run's counts, and 150 examples of auto under -m slow."""
    return [
        *(
            pytest.param(name, examples, marks=needs_cbc if name == "cbc" else ())
            for name, examples in BACKEND_EXAMPLES.items()
        ),
        pytest.param("auto", 150, marks=pytest.mark.slow),
    ]


@pytest.mark.parametrize(("backend", "examples"), backends())
def test_solve_matches_enumeration(backend, examples):
    @settings(max_examples=examples, **SETTINGS)
    @given(problems())
    def check(problem):
        omega, costs, ties, fixed, budgets = problem
        allocations = enumerate_allocations(omega, costs, ties, fixed)
        if allocations.empty:  # a tie group without a shared candidate (given its pin)
            with pytest.raises(solvers.SolverInputError, match="^(ties|fixed): "):
                solvers.solve(omega, costs, budgets, ties, fixed, backend=backend)
            return
        feasible = allocations[meets(allocations, budgets)]
        if feasible.empty:
            with pytest.raises(solvers.InfeasibleBudgetError) as caught:
                solvers.solve(omega, costs, budgets, ties, fixed, backend=backend)
            check_infeasible(caught.value, allocations, budgets)
            return
        solution = solvers.solve(omega, costs, budgets, ties, fixed, backend=backend)
        assert solution.optimal
        assert solution.predicted_loss == feasible["loss"].min()
        row = allocations[(allocations[list(solution.assignment)] == pd.Series(solution.assignment)).all(axis=1)]
        assert len(row) == 1  # a valid allocation: known pairs, ties and pins honoured
        assert solution.costs == row[[*SUMMED, *MAXED]].iloc[0].to_dict()
        assert all(solution.costs[name] <= limit for name, limit in budgets.items())

    check()


@pytest.mark.parametrize(("backend", "examples"), backends())
def test_frontier_matches_enumeration(backend, examples):
    @settings(max_examples=examples, **SETTINGS)
    @given(problems(), st.sampled_from(SUMMED), st.booleans())
    def check(problem, column, named_loss):
        omega, costs, ties, fixed, budgets = problem
        objectives = ["predicted_loss", column] if named_loss else [column]
        allocations = enumerate_allocations(omega, costs, ties, fixed)
        if allocations.empty:
            return
        feasible = allocations[meets(allocations, budgets)]
        if feasible.empty:
            with pytest.raises(solvers.InfeasibleBudgetError) as caught:
                solvers.frontier(omega, costs, objectives, budgets, ties, fixed, backend=backend)
            check_infeasible(caught.value, allocations, budgets)
            return
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # complete: no truncation warning
            points = solvers.frontier(omega, costs, objectives, budgets, ties, fixed, backend=backend)
        got = [(p.predicted_loss, p.costs[column]) for p in points]
        assert len(got) == len(set(got))  # no duplicates
        assert set(got) == nondominated(feasible[["loss", column]].to_numpy())  # all, nothing dominated
        assert [c for _, c in got] == sorted(c for _, c in got)
        assert all(p.optimal for p in points)

    check()


@settings(max_examples=60, **SETTINGS)
@given(problems())
def test_three_objectives_are_non_dominated(problem):
    omega, costs, ties, fixed, budgets = problem
    allocations = enumerate_allocations(omega, costs, ties, fixed)
    feasible = allocations[meets(allocations, budgets)] if not allocations.empty else allocations
    if feasible.empty:
        return
    with pytest.warns(solvers.ApproximateFrontierWarning):
        points = solvers.frontier(omega, costs, ["weight_bytes", "latency_s"], budgets, ties, fixed)
    got = [(p.predicted_loss, p.costs["weight_bytes"], p.costs["latency_s"]) for p in points]
    reference = nondominated(feasible[["loss", *SUMMED]].to_numpy())
    assert len(got) == len(set(got)) and set(got) <= reference
    # The extreme points of each cost are always found.
    for column in (1, 2):
        assert min(g[column] for g in got) == min(r[column] for r in reference)


@settings(max_examples=40, **SETTINGS)
@given(problems(), st.integers(2, 4))
def test_truncated_frontier_holds_the_optima_on_the_budget_grid(problem, max_points):
    omega, costs, ties, fixed, budgets = problem
    allocations = enumerate_allocations(omega, costs, ties, fixed)
    feasible = allocations[meets(allocations, budgets)] if not allocations.empty else allocations
    if feasible.empty or len(nondominated(feasible[["loss", "weight_bytes"]].to_numpy())) <= max_points:
        return
    with pytest.warns(solvers.TruncatedFrontierWarning):
        points = solvers.frontier(omega, costs, ["weight_bytes"], budgets, ties, fixed, max_points=max_points)
    reference = nondominated(feasible[["loss", "weight_bytes"]].to_numpy())
    got = {(p.predicted_loss, p.costs["weight_bytes"]) for p in points}
    assert got <= reference and len(got) <= max_points
    low = feasible["weight_bytes"].min()
    high = min(budgets.get("weight_bytes", np.inf), min(c for l, c in reference if l == min(r[0] for r in reference)))
    for budget in np.linspace(low, high, max_points):
        best = feasible.loc[feasible["weight_bytes"] <= budget, "loss"].min()
        assert min(l for l, c in got if c <= budget) == best


def test_budgets_between_lattice_points_against_enumeration():
    """Option costs 0.25 + 3k bytes: every allocation costs 1.5 + 3j, so the DP rounds a budget
    down to that lattice, which tightens its Lagrangian bound. At every budget between and
    on the lattice points, the optimum and the bound agree with enumeration."""
    rng = np.random.default_rng(4)
    layers = [f"l{i}" for i in range(6)]
    frame = pd.DataFrame(
        [
            (layer, f"c{k}", float(loss), 0.25 + 3 * step)
            for layer in layers
            for k, (loss, step) in enumerate(
                zip(sorted(rng.integers(0, 80, 3), reverse=True), sorted(rng.choice(5, 3, replace=False)))
            )
        ],
        columns=["layer", "candidate", "omega", "weight_bytes"],
    )
    omega, costs = frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", "weight_bytes"]]
    allocations = enumerate_allocations(omega, costs)
    instance = solvers._solve.setup("solve", omega, costs, None, (), None, "auto", None).instance()
    knapsack = solvers._knapsack.Knapsack(instance.loss, instance.costs["weight_bytes"], instance.valid)
    assert knapsack.unit == 3.0
    for budget in np.arange(allocations["weight_bytes"].min(), allocations["weight_bytes"].max() + 1, 0.75):
        best = allocations.loc[allocations["weight_bytes"] <= budget, "loss"].min()
        assert solvers.solve(omega, costs, {"weight_bytes": budget}).predicted_loss == best
        assert knapsack.lp_bound(budget) <= best + 1e-9
