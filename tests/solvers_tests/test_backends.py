"""Backend plumbing: explicit PuLP solvers, the HiGHS -> CBC fallback, unavailable backends
and an unproven (time-limited) result."""

from __future__ import annotations

import logging

import pulp
import pytest
from solver_contract import needs_cbc

import solvers
import solvers._backends
import solvers._ilp
from solvers._backends import cbc_path, make_solver

BUDGETS = {"weight_bytes": 90, "latency_s": 4}  # two summed budgets: always the ILP


def test_make_solver_returns_explicit_silent_solvers():
    highs = make_solver("highs", time_limit_s=5)
    assert isinstance(highs, pulp.HiGHS) and highs.timeLimit == 5 and not highs.msg
    if cbc_path() is not None:
        assert isinstance(make_solver("cbc"), pulp.COIN_CMD)
    with pytest.raises(solvers.SolverInputError, match="^make_solver: unknown backend 'gurobi'"):
        make_solver("gurobi")


def test_missing_cbc_says_how_to_install(three_layers, monkeypatch):
    monkeypatch.setattr(solvers._backends, "cbc_path", lambda: None)
    with pytest.raises(solvers.BackendUnavailableError, match=r"pip install pulp\[cbc\]"):
        solvers.solve(*three_layers, BUDGETS, backend="cbc")


@needs_cbc
def test_auto_falls_back_to_cbc_when_highs_fails(three_layers, monkeypatch, caplog):
    def broken_highs(name, time_limit_s=None):
        if name == "highs":
            raise pulp.PulpSolverError("HiGHS: crashed")
        return make_solver(name, time_limit_s)

    monkeypatch.setattr(solvers._ilp, "make_solver", broken_highs)
    with caplog.at_level(logging.WARNING, logger="solvers"):
        solution = solvers.solve(*three_layers, BUDGETS)
    assert solution.predicted_loss == pytest.approx(6.0)
    assert "backend highs: HiGHS: crashed" in caplog.text
    with pytest.raises(solvers.SolverError, match="^backend highs: HiGHS: crashed; pass another backend.$"):
        solvers.solve(*three_layers, BUDGETS, backend="highs")


def test_unproven_allocation_carries_its_gap_to_the_lagrangian_bound(three_layers, monkeypatch):
    class StoppedEarly(pulp.HiGHS):
        """HiGHS that reports a time-limit stop with an allocation in hand."""

        def actualSolve(self, lp, **kwargs):
            status = super().actualSolve(lp, **kwargs)
            lp.assignStatus(pulp.LpStatusOptimal, pulp.LpSolutionIntegerFeasible)
            return status

    monkeypatch.setattr(solvers._ilp, "make_solver", lambda name, time_limit_s=None: StoppedEarly(msg=False))
    # weight_bytes <= 100: the optimum 3.5 lies above the LP bound 3.0 (fc1 half way to fp16).
    solution = solvers.solve(*three_layers, {"weight_bytes": 100}, backend="highs", time_limit_s=1)
    assert (solution.optimal, solution.status, solution.gap) == (False, "feasible", pytest.approx(0.5))
    # BUDGETS: the optimum 6.0 meets the latency LP bound, which proves it without the backend.
    solution = solvers.solve(*three_layers, BUDGETS, backend="highs", time_limit_s=1)
    assert (solution.optimal, solution.status, solution.gap) == (True, "optimal", 0.0)


def test_highs_prints_nothing_not_even_its_banner(capfd):
    import pandas as pd

    omega = pd.DataFrame({"layer": ["a", "a", "b", "b"], "candidate": ["x", "y"] * 2, "omega": [1, 0.5, 1, 0.2]})
    costs = omega[["layer", "candidate"]].assign(weight_bytes=[1, 2, 1, 2], latency_s=[1, 2, 1, 2])
    solvers.solve(omega, costs, {"weight_bytes": 3, "latency_s": 3.5}, backend="highs")  # two budgets: the ILP
    out, err = capfd.readouterr()  # file descriptors: HiGHS writes from C++
    assert out == "" and err == ""
