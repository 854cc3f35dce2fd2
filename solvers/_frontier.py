"""`frontier`: the non-dominated allocations of predicted loss against one or two costs."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from solvers._errors import ApproximateFrontierWarning, TruncatedFrontierWarning
from solvers._inputs import check_costs, check_int, check_objectives
from solvers._instance import Instance
from solvers._knapsack import Knapsack, StateOverflow, nondominated
from solvers._solution import Solution
from solvers._solve import Problem, minimise, setup

__all__ = ["frontier"]

# The ILP frontier steps its cost limit this far (relative) below the last point found, well
# above the backends' 1e-9 feasibility tolerance: costs closer than this count as equal there.
_STEP_RTOL = 1e-7
# Weights per direction of the scalarised two-objective frontiers that approximate three.
_SCALARISATIONS = 8

Point = tuple[np.ndarray, float]  # option index per group, proven gap (0.0: optimal)


class _Front:
    """`loss` against one summed cost column, within the problem's budgets: a budget on the
    column caps it (`limit`), the other summed budgets stay constraints.

    `point(limit)` is the lexicographic optimum under `cost <= limit` (least loss, then least
    cost: a non-dominated point); `complete` lists every non-dominated point.
    """

    def __init__(self, problem: Problem, instance: Instance, loss: np.ndarray, column: str) -> None:
        self.problem, self.instance, self.loss, self.column = problem, instance, loss, column
        summed = problem.summed()
        self.limit = summed.get(column, math.inf)
        self.others = {n: v for n, v in summed.items() if n != column}
        # With nothing else binding, one knapsack (its hull increments sorted once) serves
        # every budget of the frontier.
        self.knapsack = (
            Knapsack(loss, instance.costs[column], instance.valid)
            if problem.backend == "auto" and not self.others
            else None
        )

    def _minimise(self, objective: np.ndarray, summed: Mapping[str, float], then: str | None = None) -> Point | None:
        problem = self.problem
        return minimise(self.instance, objective, summed, problem.backend, problem.time_limit_s, then=then)

    def cost(self, point: Point) -> float:
        return float(self.instance.column_values(self.column, point[0][None])[0])

    def point(self, limit: float) -> Point | None:
        if self.knapsack is None:
            return self._minimise(self.loss, {**self.others, self.column: limit}, then=self.column)
        try:
            choice = self.knapsack.optimum(limit)
        except StateOverflow as overflow:
            # The grid keeps its pace past the DP's cap (an ILP per point would not, at this
            # size): the best allocation found, with its proven gap.
            return overflow.incumbent, overflow.gap
        return None if choice is None else (choice, 0.0)

    def complete(self, max_points: int) -> list[Point] | None:
        """Every non-dominated point, or None past `max_points`."""
        limit = self.limit
        if self.knapsack is not None:
            choices = self.knapsack.frontier(limit, max_points)
            return None if choices is None else [(choice, 0.0) for choice in choices]
        # Epsilon-constraint: the next point is the optimum strictly cheaper than the last.
        points: list[Point] = []
        while (found := self.point(limit)) is not None:
            cost = self.cost(found)
            if points and cost >= self.cost(points[-1]):
                break
            points.append(found)
            if len(points) > max_points:
                return None
            limit = cost - _STEP_RTOL * cost if cost > 0 else -1.0
        return points[::-1]

    def grid(self, count: int) -> list[Point]:
        """Optima at `np.linspace(low, high, count)`: `low` is the least achievable cost,
        `high` the cost of the least-loss point (capped by `limit`)."""
        top = self.point(self.limit)
        if self.knapsack is not None:
            low = self.knapsack.min_cost
        else:
            cheapest = self._minimise(self.instance.costs[self.column], self.others)
            low = None if cheapest is None else self.cost(cheapest)
        if top is None or low is None:
            return []
        limits = np.linspace(low, min(self.limit, self.cost(top)), count)
        return [point for point in map(self.point, limits) if point is not None]


def _unique_nondominated(values: np.ndarray) -> np.ndarray:
    """Indices of the rows of `values` (points x objectives, loss first) that no other row
    dominates, one per repeated row, ordered by the second column then the loss."""
    if values.shape[1] == 2:
        return nondominated(values[:, 0], values[:, 1], np.arange(len(values)))
    order = np.lexsort((values[:, 0], *values[:, :0:-1].T))
    points = values[order]
    keep = np.ones(len(points), dtype=bool)
    for start in range(0, len(points), 512):
        block = points[start : start + 512]
        no_worse = np.all(points[None, :, :] <= block[:, None, :], axis=2)
        better = np.any(points[None, :, :] < block[:, None, :], axis=2)
        earlier_twin = np.all(points[None, :, :] == block[:, None, :], axis=2) & (
            np.arange(len(points))[None, :] < np.arange(start, start + len(block))[:, None]
        )
        keep[start : start + 512] = ~np.any((no_worse & better) | earlier_twin, axis=1)
    return order[keep]


def _two_objective(
    problem: Problem, instance: Instance, column: str, max_points: int, anchor_costs: list[float]
) -> tuple[list[Point], bool]:
    front = _Front(problem, instance, instance.loss, column)
    points = front.complete(max_points)
    if points is not None:  # the complete set holds the optimum at every cost already
        return points, True
    anchored = [front.point(min(cost, front.limit)) for cost in anchor_costs]
    return front.grid(max_points) + [point for point in anchored if point is not None], False


def _weights(problem: Problem, instance: Instance, column: str) -> list[float]:
    """0 and a fan of weights on `column` around its loss-per-cost trade-off: the slope
    between its cheapest and its least-loss points times tan of angles evenly spaced in
    (0, pi/2)."""
    front = _Front(problem, instance, instance.loss, column)
    ends = front.grid(2)
    if len(ends) < 2:
        return [0.0]
    loss_high, loss_low = (float(front.loss[instance.rows, choice].sum()) for choice, _ in ends)
    cost_low, cost_high = map(front.cost, ends)
    if not (cost_high > cost_low and loss_high > loss_low):
        return [0.0]
    angles = np.arange(1, _SCALARISATIONS + 1) * (math.pi / 2) / (_SCALARISATIONS + 1)
    return [0.0, *((loss_high - loss_low) / (cost_high - cost_low) * np.tan(angles))]


def _three_objective(problem: Problem, instance: Instance, columns: tuple[str, str], max_points: int) -> list[Point]:
    """Union of exact two-objective frontiers of (loss + mu * other cost, cost) over a fan of
    weights mu, for each cost in turn; each such point is non-dominated in three objectives."""
    per_front = max(2, max_points // (2 * _SCALARISATIONS + 2))
    points: list[Point] = []
    for column, other in (columns, columns[::-1]):
        for mu in _weights(problem, instance, other):
            loss = instance.loss + mu * np.where(instance.valid, instance.costs[other], 0.0)
            front = _Front(problem, instance, loss, column)
            found = front.complete(per_front)
            points += found if found is not None else front.grid(per_front)
    return points


def frontier(
    omega: pd.DataFrame,
    costs: pd.DataFrame,
    objectives: Iterable[str],
    budgets: Mapping[str, float] | None = None,
    ties: Iterable[Iterable[str]] = (),
    fixed: Mapping[str, str] | None = None,
    *,
    max_points: int = 200,
    anchor_costs: Iterable[float] = (),
    backend: str = "auto",
    time_limit_s: float | None = None,
) -> list[Solution]:
    """The non-dominated allocations of predicted loss against one or two cost columns.

    What is exact:

    * Two objectives (loss and one summed cost). If the non-dominated set, and every partial
      set met while building it, has at most `max_points` points, the result is that complete
      set: every allocation's (loss, cost) is matched or beaten by a returned point, no
      returned point is dominated, and no two share (loss, cost). Otherwise (a 1000-layer
      model has about 10^6 such points) a `TruncatedFrontierWarning` is emitted and the
      result holds, for each of `max_points` budgets `np.linspace(low, high, max_points)`
      (`low`: the least achievable cost; `high`: the cost of the least-loss point, or the
      budget on the column), the exact optimum under that budget, i.e. what an ILP solved at
      each of those budgets returns; every returned point is still non-dominated.
    * Three objectives (loss and two summed costs): a dense approximation, with an
      `ApproximateFrontierWarning`: the union of exact two-objective frontiers of
      (loss + mu * cost_2, cost_1) and (loss + nu * cost_1, cost_2) over a fan of 9 weights
      each (mu = 0 included), filtered to the non-dominated points. Every returned point is
      non-dominated; points optimal for no such weighted problem may be missing.

    With `backend="auto"` and no summed budget besides the objective columns, the
    two-objective frontier comes from a frontier merge and the exact knapsack DP (see
    `solvers.solve`), one knapsack (its hull sorted once) for every budget: the 200 default
    points of a 560-layer LLM in under a second, of an 18,432-layer MoE in 3 to 7 seconds. Should
    a budget's DP outgrow its cap of 200,000 partial sums (not seen on realistic tables),
    its point is the best allocation found, with `optimal=False` and its proven `gap`.
    Otherwise the frontier comes from ILPs (epsilon-constraint: each point costs two solves,
    and costs within a relative 1e-7 of each other count as equal).

    Args:
        omega: Omega table (see `solvers.solve`).
        costs: Cost table (see `solvers.solve`).
        objectives: The cost column(s) to trade against the predicted loss, optionally led by
            `"predicted_loss"`: `["latency_s"]` and `["predicted_loss", "latency_s"]` are the
            same two-objective frontier; `["latency_s", "weight_bytes"]` asks for three.
            Max-aggregated columns are budgets, not objectives.
        budgets: Limits that every returned point meets (a budget on an objective column cuts
            the frontier there; max budgets remove the options above them).
        ties: Groups of layers that must share a candidate.
        fixed: Layer -> candidate pins.
        max_points: Most points returned, and the size past which two-objective results are
            truncated to the budget grid.
        anchor_costs: Costs of the (one) objective column at which the exact optimum joins a
            truncated two-objective result, beside the grid: e.g. each uniform configuration's
            cost, so that each is compared with the best allocation that costs no more. A
            complete frontier holds these optima already; three objectives ignore them.
        backend: `"auto"`, `"highs"` or `"cbc"` (see `solvers.solve`).
        time_limit_s: Limit of each ILP run in seconds.

    Returns:
        The points sorted by the first cost objective (ascending, so predicted loss
        descending for two objectives). Each point's `optimal` is True when it was proven
        optimal for a budget equal to its own cost(s); otherwise its `gap` bounds how far
        (see `Solution`).

    Raises:
        InfeasibleBudgetError: No allocation meets the budgets.
        SolverInputError: Invalid tables, objectives, budgets, ties, pins or parameters.
        SolverError: An ILP backend failed.

    Warns:
        TruncatedFrontierWarning: The two-objective frontier exceeded `max_points`.
        ApproximateFrontierWarning: Three objectives were asked for.
    """
    problem = setup("frontier", omega, costs, budgets, ties, fixed, backend, time_limit_s)
    columns = check_objectives(objectives, problem.tables)
    max_points = check_int("frontier", "max_points", max_points, 2)
    anchor_costs = check_costs("frontier", "anchor_costs", anchor_costs)
    instance = problem.instance()
    if instance is None:
        raise problem.infeasible()
    instance = instance.without_dominated(sorted(set(columns) | set(problem.summed())))
    if len(columns) == 1:
        points, complete = _two_objective(problem, instance, columns[0], max_points, anchor_costs)
    else:
        points, complete = _three_objective(problem, instance, columns, max_points), False
    if not points:
        raise problem.infeasible()

    choices = np.stack([choice for choice, _ in points])
    gaps = np.array([gap for _, gap in points])
    values = np.column_stack(
        [instance.column_values("loss", choices), *(instance.column_values(c, choices) for c in columns)]
    )
    keep = _unique_nondominated(values)
    if len(columns) == 2 and len(keep) > max_points:  # the three-objective union can overflow
        keep = keep[np.unique(np.linspace(0, len(keep) - 1, max_points).round().astype(int))]
    if len(columns) == 2:
        warnings.warn(
            f"frontier over {', '.join(columns)}: three objectives are approximated by "
            f"weighted two-objective frontiers ({len(keep)} non-dominated points, possibly "
            f"not all); see solvers.frontier's docstring.",
            ApproximateFrontierWarning,
            stacklevel=2,
        )
    elif not complete:
        warnings.warn(
            f"frontier over {columns[0]}: more than max_points={max_points} non-dominated "
            f"points; returning the exact optima at {max_points} evenly spaced budgets. Raise "
            f"max_points for more.",
            TruncatedFrontierWarning,
            stacklevel=2,
        )
    return instance.solutions(choices[keep], gaps[keep])
