"""`refine`: NSGA-II on a cheap synthetic measured loss, with the study in SQLite."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from solver_enumeration import random_tables

import solvers


@pytest.fixture(autouse=True)
def quiet_optuna():
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    yield
    optuna.logging.set_verbosity(verbosity)


@pytest.fixture(scope="module")
def tables():
    return random_tables(np.random.default_rng(11), 6, 4)


class Measured:
    """A measured loss that the predicted one only approximates: int2 hurts twice as much."""

    def __init__(self, omega):
        self.omega = omega.set_index(["layer", "candidate"])["omega"]
        self.calls = []

    def __call__(self, assignment):
        self.calls.append(dict(assignment))
        return float(sum(self.omega[pair] * (2.0 if pair[1] == "int2" else 1.0) for pair in assignment.items()))


def non_dominated(points, column):
    values = np.array([[p.measured_loss, p.costs[column]] for p in points])
    return not any((np.all(values <= row, axis=1) & np.any(values < row, axis=1)).any() for row in values)


def test_refine_seeds_then_continues_in_sqlite(tables, tmp_path):
    omega, costs = tables
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    seeds = solvers.frontier(omega, costs, ["weight_bytes"])[::3]
    seeds[-1] = dict(seeds[-1].assignment)  # a bare assignment seeds too
    measure = Measured(omega)
    kwargs = dict(objectives=["measured_loss", "weight_bytes"], storage=storage, study_name="mpq", population_size=4)

    first = solvers.refine(omega, costs, measure, seeds=seeds, n_trials=len(seeds) + 6, **kwargs)
    study = optuna.load_study(study_name="mpq", storage=storage)
    trials = study.get_trials()
    assert len(trials) == len(seeds) + 6
    # The seeds are the first trials, in order.
    assert [measure.calls[i] for i in range(len(seeds))] == [getattr(s, "assignment", s) for s in seeds]
    assert first and non_dominated(first, "weight_bytes")
    for point in first:
        assert point.status == "measured" and not point.optimal and point.gap is None
        assert point.measured_loss == pytest.approx(Measured(omega)(point.assignment))
        assert point.predicted_loss == pytest.approx(
            omega.set_index(["layer", "candidate"])["omega"][list(point.assignment.items())].sum()
        )

    second = solvers.refine(omega, costs, measure, seeds=seeds, n_trials=5, **kwargs)
    assert len(optuna.load_study(study_name="mpq", storage=storage).get_trials()) == len(seeds) + 11
    # The front covers both calls: every point of the first call's front is matched or beaten.
    assert non_dominated(second, "weight_bytes")
    for point in first:
        assert any(
            p.measured_loss <= point.measured_loss and p.costs["weight_bytes"] <= point.costs["weight_bytes"]
            for p in second
        )


def test_an_allocation_is_measured_once(three_layers):
    omega, costs = three_layers  # conv pinned: 9 allocations for 40 trials
    measure = Measured(omega)
    solvers.refine(
        omega, costs, measure, objectives=["weight_bytes"], n_trials=40, population_size=4, fixed={"conv": "int8"}
    )
    distinct = {tuple(sorted(call.items())) for call in measure.calls}
    assert len(distinct) == len(measure.calls) <= 9


def test_budgets_shape_the_search(tables):
    omega, costs = tables
    sram = costs.groupby("layer")["sram_bytes"].min().max()
    weight = costs.groupby("layer")["weight_bytes"].median().sum()
    points = solvers.refine(
        omega,
        costs,
        Measured(omega),
        objectives=["latency_s"],
        n_trials=12,
        population_size=4,
        budgets={"sram_bytes": sram, "weight_bytes": weight},
        fixed={"block.0-fc": "int4"},
    )
    assert points
    for point in points:
        assert point.costs["sram_bytes"] <= sram and point.costs["weight_bytes"] <= weight
        assert point.assignment["block.0-fc"] == "int4"


def test_study_with_other_objectives_is_refused(tables, tmp_path):
    omega, costs = tables
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    solvers.refine(
        omega, costs, Measured(omega), objectives=["weight_bytes"], n_trials=2, storage=storage, study_name="s"
    )
    with pytest.raises(solvers.SolverInputError, match=r"^study 's': has 2 objectives, this call 3"):
        solvers.refine(
            omega,
            costs,
            Measured(omega),
            objectives=["weight_bytes", "latency_s"],
            n_trials=2,
            storage=storage,
            study_name="s",
        )


def test_seed_outside_the_search_space(tables):
    omega, costs = tables
    seed = solvers.solve(omega, costs)
    with pytest.raises(solvers.SolverInputError, match=r"^seeds: layers block.0-fc are assigned \['int6'\]"):
        solvers.refine(
            omega,
            costs,
            Measured(omega),
            objectives=["weight_bytes"],
            n_trials=2,
            seeds=[seed],
            fixed={"block.0-fc": "int2"},
        )
