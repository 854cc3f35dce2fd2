"""`solve`: the least-loss allocation under budgets, and the diagnosis of infeasible budgets."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from solvers._backends import BACKENDS, REL_GAP
from solvers._errors import InfeasibleBudgetError, SolverError
from solvers._ilp import Row, solve_ilp
from solvers._inputs import (
    Tables,
    check_budgets,
    check_choice,
    check_fixed,
    check_tables,
    check_ties,
    check_time_limit,
)
from solvers._instance import Instance, build_instance
from solvers._knapsack import Knapsack, StateOverflow
from solvers._solution import Solution

__all__ = ["Problem", "minimise", "setup", "solve"]

logger = logging.getLogger("solvers.solve")

METHODS = ("auto", *BACKENDS)
# Budgets hold to this relative tolerance (the ILP backends' feasibility tolerance).
BUDGET_RTOL = 1e-9


@dataclass(frozen=True, eq=False)
class Problem:
    """Checked inputs of one call: tables, decision groups and budgets."""

    tables: Tables
    base: Instance
    budgets: dict[str, float]
    backend: str
    time_limit_s: float | None

    def summed(self, budgets: Mapping[str, float] | None = None) -> dict[str, float]:
        """The budgets (default: this problem's) on summed columns."""
        budgets = self.budgets if budgets is None else budgets
        return {n: v for n, v in budgets.items() if n not in self.tables.max_columns}

    def instance(self, budgets: Mapping[str, float] | None = None) -> Instance | None:
        """Options left by the max budgets, or None when a group has none left."""
        instance = self.base.within_max_budgets(self.budgets if budgets is None else budgets)
        return instance if instance.valid.any(axis=1).all() else None

    def infeasible(self) -> InfeasibleBudgetError:
        """The error naming a budget that cannot be met and its smallest achievable value.

        The first budget (in the caller's order) whose companions are jointly feasible is
        named, with the smallest value it can take under all of them. When no budget qualifies
        (several conflicts at once), budgets are kept in order while they remain feasible and
        the first that breaks feasibility is named, given those kept.
        """
        for name in self.budgets:
            if error := self._unmet(name, {n: v for n, v in self.budgets.items() if n != name}):
                return error
        kept: dict[str, float] = {}
        for name, limit in self.budgets.items():
            if error := self._unmet(name, kept):
                return error
            kept[name] = limit
        raise SolverError(
            f"budgets {self.budgets}: the solver found them infeasible, but each check on its "
            f"own passes; loosen a budget slightly (rounding at the limit)."
        )

    def _unmet(self, name: str, others: Mapping[str, float]) -> InfeasibleBudgetError | None:
        """The error for budget `name` if it cannot be met while `others` are."""
        smallest = self.smallest_achievable(name, others)
        limit = self.budgets[name]
        if smallest is None or smallest <= limit * (1 + BUDGET_RTOL):
            return None
        return InfeasibleBudgetError(name, limit, smallest, others)

    def smallest_achievable(self, column: str, others: Mapping[str, float]) -> float | None:
        """Smallest value of `column` over allocations meeting `others`, or None if none does."""
        instance = self.instance(others)
        if instance is None:
            return None
        summed = self.summed(others)
        if column not in self.tables.max_columns:
            found = minimise(instance, instance.costs[column], summed, self.backend, self.time_limit_s)
            return None if found is None else float(instance.column_values(column, found[0][None])[0])
        # A maximum: the smallest threshold that leaves a feasible allocation (bisection).
        values = instance.costs[column]
        floor = np.where(instance.valid, values, np.inf).min(axis=1).max()
        thresholds = np.unique(values[instance.valid & (values >= floor)])

        def feasible(threshold: float) -> bool:
            narrowed = instance.within_max_budgets({column: threshold})
            return summed_feasible(narrowed, summed, self.backend, self.time_limit_s)

        if not feasible(thresholds[-1]):
            return None
        low, high = 0, len(thresholds) - 1
        while low < high:
            middle = (low + high) // 2
            low, high = (low, middle) if feasible(thresholds[middle]) else (middle + 1, high)
        return float(thresholds[low])


def setup(
    func: str,
    omega: object,
    costs: object,
    budgets: object,
    ties: object,
    fixed: object,
    backend: object,
    time_limit_s: object,
) -> Problem:
    """Check every argument shared by `solve`, `frontier` and `refine`."""
    tables = check_tables(omega, costs)
    return Problem(
        tables=tables,
        base=build_instance(tables, check_ties(ties, tables), check_fixed(fixed, tables)),
        budgets=check_budgets(budgets, tables),
        backend=check_choice(func, "backend", backend, METHODS),
        time_limit_s=check_time_limit(func, time_limit_s),
    )


def _lower_bound(instance: Instance, objective: np.ndarray, summed: Mapping[str, float]) -> float:
    """Lower bound on `objective` under the summed budgets: the best single-budget LP
    (Lagrangian) bound, or the sum of the group minima."""
    floor = float(np.where(instance.valid, objective, np.inf).min(axis=1).sum())
    bounds = (Knapsack(objective, instance.costs[n], instance.valid).lp_bound(v) for n, v in summed.items())
    return max([floor, *bounds])


def _objective_scale(instance: Instance, objective: np.ndarray, bound: float) -> float | None:
    """Rough size of the optimal objective above its group-minimum floor, for ILP scaling:
    `bound` (a lower bound on the optimum) above the floor, else the smallest positive
    option offset."""
    floor = np.where(instance.valid, objective, np.inf).min(axis=1)
    if math.isfinite(bound) and bound > floor.sum():
        return bound - float(floor.sum())
    offsets = (objective - floor[:, None])[instance.valid]
    positive = offsets[offsets > 0]
    return float(positive.min()) if len(positive) else None


def minimise(
    instance: Instance,
    objective: np.ndarray,
    summed: Mapping[str, float],
    backend: str,
    time_limit_s: float | None,
    *,
    then: str | None = None,
) -> tuple[np.ndarray, bool] | None:
    """Least-`objective` allocation under summed budgets (max budgets already applied).

    With `backend="auto"` and at most one summed budget, the exact knapsack DP answers in
    milliseconds (and already breaks ties by the least cost on that budget's column);
    otherwise, or when the DP outgrows its cap, PuLP solves the ILP.

    Args:
        then: A cost column minimised among the allocations of least objective (a second
            ILP bounds the objective at its optimum); None to stop at the least objective.

    Returns:
        (option index per group, proven gap: 0.0 when optimal, else the distance to the
        Lagrangian bound), or None when infeasible.
    """
    if backend == "auto" and len(summed) <= 1 and then in (None, *summed):
        name, limit = next(iter(summed.items()), (None, math.inf))
        cost = instance.costs[name] if name else np.zeros_like(objective)
        try:
            choice = Knapsack(objective, cost, instance.valid).optimum(limit)
            return None if choice is None else (choice, 0.0)
        except StateOverflow as overflow:
            logger.info("knapsack DP overflowed (%s); solving the ILP instead", overflow)
    rows = [Row(instance.costs[n], v) for n, v in summed.items()]

    def ilp(goal: np.ndarray, extra: list[Row], bound: float):
        return solve_ilp(
            instance.valid,
            goal,
            rows + extra,
            backend=backend,
            time_limit_s=time_limit_s,
            objective_scale=_objective_scale(instance, goal, bound),
        )

    bound = _lower_bound(instance, objective, summed)
    best = ilp(objective, [], bound)
    if best is None:
        return None

    def proven(choice: np.ndarray) -> tuple[np.ndarray, float]:
        found = float(objective[instance.rows, choice].sum())
        # Within the backends' own relative optimality gap the bound proves the optimum.
        gap = found - bound
        return choice, 0.0 if best.optimal or gap <= REL_GAP * abs(found) else gap

    if then is None:
        return proven(best.choice)
    value = float(objective[instance.rows, best.choice].sum())
    magnitude = float(np.abs(np.where(instance.valid, objective, 0.0)).max(axis=1).sum())
    limit = Row(objective, value + 1e-9 * max(abs(value), magnitude))
    tied = ilp(instance.costs[then], [limit], _lower_bound(instance, instance.costs[then], summed))
    # Rounding at the bound can leave no tie: keep the first optimum. An unproven tie-break
    # keeps the loss of the first (to the bound row's 1e-9); only its cost may not be least.
    return proven(best.choice if tied is None else tied.choice)


def summed_feasible(instance: Instance, summed: Mapping[str, float], backend: str, time_limit_s: float | None) -> bool:
    """Whether some allocation meets every summed budget."""
    if not summed:
        return True
    (first, limit), *rest = summed.items()
    found = minimise(instance, instance.costs[first], dict(rest), backend, time_limit_s)
    return found is not None and instance.column_values(first, found[0][None])[0] <= limit * (1 + BUDGET_RTOL)


def solve(
    omega: pd.DataFrame,
    costs: pd.DataFrame,
    budgets: Mapping[str, float] | None = None,
    ties: Iterable[Iterable[str]] = (),
    fixed: Mapping[str, str] | None = None,
    *,
    backend: str = "auto",
    time_limit_s: float | None = None,
) -> Solution:
    """The allocation that minimises the summed omega under the budgets.

    The pairs solved over are the (layer, candidate) pairs present in both tables.

    Args:
        omega: Table with columns `layer`, `candidate`, `omega` (predicted loss increase; may
            be negative). Other columns are ignored.
        costs: Table with columns `layer`, `candidate` and numeric cost columns (`latency_s`,
            `energy_j`, `weight_bytes`, `bops`, `sram_bytes`, ...). Columns in
            `costs.attrs["max_columns"]` (default `sram_bytes`) aggregate by maximum; the
            others by sum.
        budgets: Cost column -> limit in its unit. A summed column bounds the sum over layers;
            a max column bounds every layer.
        ties: Groups of layers that must share a candidate (overlapping groups merge).
        fixed: Layer -> candidate pins, e.g. first and last layer at 8 bits.
        backend: `"auto"` (default): the exact knapsack DP when at most one budget is summed,
            else the ILP with HiGHS (CBC if HiGHS is missing or fails); `"highs"` or `"cbc"`:
            always the PuLP ILP with that solver.
        time_limit_s: Limit of each ILP run in seconds; an allocation found by then comes back
            with `optimal=False`, `status="feasible"` and its `gap` to the Lagrangian bound.

    Returns:
        The optimal `Solution`; budgets hold to a relative 1e-9 (rounding).

    Raises:
        InfeasibleBudgetError: No allocation meets the budgets; names the budget, the
            smallest value it could take given the others, and the fix.
        SolverInputError: Invalid tables, budgets, ties, pins or parameters.
        SolverError: An ILP backend failed or found no allocation within the time limit.

    Example:
        >>> import pandas as pd, solvers
        >>> omega = pd.DataFrame({"layer": ["a", "a", "b", "b"], "candidate": ["int4", "int8"] * 2,
        ...                       "omega": [0.4, 0.1, 0.3, 0.2]})
        >>> costs = omega[["layer", "candidate"]].assign(weight_bytes=[50, 100, 50, 100])
        >>> solvers.solve(omega, costs, {"weight_bytes": 150}).assignment
        {'a': 'int8', 'b': 'int4'}
    """
    problem = setup("solve", omega, costs, budgets, ties, fixed, backend, time_limit_s)
    summed = problem.summed()
    instance = problem.instance()
    found = None
    if instance is not None:
        instance = instance.without_dominated(list(summed))
        found = minimise(instance, instance.loss, summed, problem.backend, problem.time_limit_s)
    if found is None:
        raise problem.infeasible()
    choice, gap = found
    return instance.solutions(choice[None], gap)[0]
