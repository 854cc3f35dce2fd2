"""The allocation as an integer linear program, solved through PuLP.

Formulation, over the options (g, k) of the decision groups (tied layers contracted, pinned
layers reduced to one option, options above a max budget removed):

    minimise    sum_{g,k} f[g,k] * x[g,k]
    subject to  sum_k x[g,k] == 1                       for every group g
                sum_{g,k} a_r[g,k] * x[g,k] <= b_r      for every row r (summed budgets)
                x[g,k] binary

Numerics: since each group picks exactly one option, subtracting a group's smallest
coefficient from a row (and from the objective) changes it by a constant; after that every
coefficient is >= 0, an option whose coefficient alone exceeds a row's remaining limit can be
dropped before solving, and each row is divided by its remaining limit. The objective is divided
by a caller's estimate of its optimal value, so the solver's absolute tolerances act on O(1)
numbers. Variables are named by integer ids: PuLP rewrites `-+[] ->/` in names.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pulp

from solvers._backends import make_solver
from solvers._errors import BackendUnavailableError, SolverError

__all__ = ["IlpResult", "Row", "solve_ilp"]

logger = logging.getLogger("solvers.ilp")


@dataclass(frozen=True)
class Row:
    """The constraint `sum_g coefficients[g, choice_g] <= limit`."""

    coefficients: np.ndarray
    limit: float


@dataclass(frozen=True)
class IlpResult:
    """Option index per group, and whether the backend proved it optimal."""

    choice: np.ndarray
    optimal: bool


def _offset(values: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, float]:
    """Coefficients minus their group minimum over `allowed`, and the sum of those minima."""
    masked = np.where(allowed, values, np.inf)
    low = masked.min(axis=1)
    return np.where(allowed, values - low[:, None], 0.0), float(low.sum())


def _build(
    allowed: np.ndarray, objective: np.ndarray, rows: Sequence[Row], objective_scale: float | None
) -> tuple[pulp.LpProblem, dict[int, pulp.LpVariable], np.ndarray] | None:
    """The PuLP model, or None when the rows are infeasible before solving."""
    allowed = allowed.copy()
    scaled_rows = []
    for row in rows:
        if math.isinf(row.limit):
            continue
        coefficients, floor = _offset(row.coefficients, allowed)
        room = row.limit - floor
        if room < 0:
            return None
        allowed &= coefficients <= room
        if room > 0:  # room 0 leaves only zero coefficients: the row holds trivially
            scaled_rows.append(np.where(allowed, coefficients, 0.0) / room)
    if not allowed.any(axis=1).all():
        return None

    objective, _ = _offset(objective, allowed)
    scale = objective_scale if objective_scale and objective_scale > 0 else objective.max()
    objective = objective / (scale if scale > 0 else 1.0)

    pairs = np.argwhere(allowed)
    prob = pulp.LpProblem("mpq_allocation", pulp.LpMinimize)
    x = prob.add_variable_dict("x", list(range(len(pairs))), cat=pulp.LpBinary)

    def total(coefficients: np.ndarray) -> pulp.LpAffineExpression:
        return pulp.LpAffineExpression((x[j], float(coefficients[g, k])) for j, (g, k) in enumerate(pairs))

    prob += total(objective)
    for g, options in enumerate(np.split(np.arange(len(pairs)), np.cumsum(allowed.sum(axis=1))[:-1])):
        prob += pulp.lpSum(x[j] for j in options) == 1, f"one_candidate_{g}"
    for r, coefficients in enumerate(scaled_rows):
        prob += total(coefficients) <= 1, f"budget_{r}"
    return prob, x, pairs


def solve_ilp(
    valid: np.ndarray,
    objective: np.ndarray,
    rows: Sequence[Row] = (),
    *,
    backend: str = "auto",
    time_limit_s: float | None = None,
    objective_scale: float | None = None,
) -> IlpResult | None:
    """Minimise `objective` over one option per group subject to `rows`.

    Args:
        valid: `G x K` mask of the options that exist.
        objective: `G x K` coefficient of each option.
        rows: Constraints `sum_g coefficients[g, choice_g] <= limit`.
        backend: `"highs"`, `"cbc"`, or `"auto"` (HiGHS, then CBC if HiGHS is missing or
            fails).
        time_limit_s: Limit of one backend run; an allocation found by then is returned with
            `optimal=False`.
        objective_scale: Rough size of the optimal objective above its group-minimum floor
            (the objective is divided by it); None uses the largest coefficient.

    Returns:
        The allocation, or None when no allocation satisfies the rows.

    Raises:
        SolverError: The backend stopped without an allocation or with an unexpected status.
    """
    built = _build(valid, objective, rows, objective_scale)
    if built is None:
        return None
    prob, x, pairs = built
    failure: SolverError | None = None
    for name in ["highs", "cbc"] if backend == "auto" else [backend]:
        try:
            prob.solve(make_solver(name, time_limit_s))
        except (BackendUnavailableError, pulp.PulpSolverError) as error:
            failure = (
                error
                if isinstance(error, SolverError)
                else SolverError(f"backend {name}: {error}; pass another backend.")
            )
            logger.warning("%s", failure)
            continue
        if prob.status == pulp.LpStatusInfeasible:
            return None
        if prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible):
            values = np.zeros(valid.shape)
            values[pairs[:, 0], pairs[:, 1]] = [x[j].value() or 0.0 for j in range(len(pairs))]
            return IlpResult(choice=values.argmax(axis=1), optimal=prob.sol_status == pulp.LpSolutionOptimal)
        within = f" within time_limit_s={time_limit_s}" if time_limit_s is not None else ""
        failure = SolverError(
            f"backend {name}: no allocation found{within} (status {pulp.LpStatus[prob.status]}); "
            f"raise time_limit_s, or pass another backend."
        )
        logger.warning("%s", failure)
    raise failure
