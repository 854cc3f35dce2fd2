"""Bit allocation solvers: pure functions of (omega table, cost table, budgets) -> solutions.

`solve` finds the allocation of minimum predicted loss under budgets, `price` reads one given
allocation's predicted loss and costs off the tables, `frontier` the
non-dominated allocations of predicted loss against one or two costs, and `refine` improves a
frontier against a measured objective with Optuna's NSGA-II. No torch, no database.
"""

from solvers._errors import (
    ApproximateFrontierWarning,
    BackendUnavailableError,
    InfeasibleBudgetError,
    InvalidParameterError,
    SolverError,
    SolverInputError,
    TruncatedFrontierWarning,
    UnknownNameError,
)
from solvers._frontier import frontier
from solvers._price import price
from solvers._refine import refine
from solvers._solution import Solution
from solvers._solve import solve

__all__ = [
    "ApproximateFrontierWarning",
    "BackendUnavailableError",
    "InfeasibleBudgetError",
    "InvalidParameterError",
    "Solution",
    "SolverError",
    "SolverInputError",
    "TruncatedFrontierWarning",
    "UnknownNameError",
    "frontier",
    "price",
    "refine",
    "solve",
]
