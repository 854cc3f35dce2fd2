"""The measured frontier: dominance on what was measured, and the cheapest configuration within
an allowed drop, found with measured evaluations.

The proxy (summed omega) ranks configurations well where quantization is gentle and misjudges
the catastrophic ones; what a user asks is "the cheapest configuration within X of float", and
only a measurement answers it. :class:`DropSearch` answers it with few evaluations:

1. **Bisection over exact solves.** The proxy frontier (exact optima of predicted loss at every
   budget of the objective, ascending cost) is searched for its cheapest point whose measured
   metric is within the drop, assuming the metric falls as the budget shrinks: about
   ``log2(points)`` evaluations.
2. **Local repair.** From that point, one-layer moves to a cheaper candidate, in the order of
   least predicted loss per unit of cost saved, are measured one at a time; a move that keeps
   the metric within the drop is taken, one that breaks it marks that layer's candidate (and
   every cheaper one of that layer) as misjudged by the proxy and is never tried again.

Refinement (:meth:`DropSearch.refine`) spends extra evaluations where the measured frontier gains
most: in its widest step, the proxy's optimum inside it, else a one-layer move from the step's
upper point. :meth:`DropSearch.cover` measures proxy points alone the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import islice

import numpy as np
import pandas as pd

import solvers
from mpq._validation import Interval
from mpq.exceptions import InvalidParameterError
from mpqvocab import parameter_message

#: Evaluations a search with ``max_drop`` spends when ``max_evals`` is not given.
DEFAULT_DROP_EVALS = 50


def absolute_drop(max_drop: float | str, float_metric: float, func: str = "search") -> float:
    """``max_drop`` in metric units: a number is one already, ``"1%"`` is relative to ``float_metric``.

    Raises:
        InvalidParameterError: negative, not a number, or a relative drop of 100 % or more.
    """
    check_drop(max_drop, func)
    if isinstance(max_drop, str):
        return float(max_drop.strip().removesuffix("%")) / 100 * abs(float_metric)
    return float(max_drop)


def check_drop(max_drop: object, func: str = "search") -> None:
    """Check ``max_drop``: a number >= 0 (metric units), or a string ``"<p>%"`` with 0 <= p < 100."""
    if isinstance(max_drop, str):
        text = max_drop.strip()
        try:
            ok = text.endswith("%") and 0 <= float(text.removesuffix("%")) < 100
        except ValueError:
            ok = False
    else:
        ok = Interval(float, 0, float("inf"), closed="left").accepts(max_drop)
    if not ok:
        raise InvalidParameterError(
            parameter_message(
                func,
                "max_drop",
                "a number >= 0 in metric units or a percentage of the float metric below 100%, such as 0.01 or '1%'",
                max_drop,
            )
        )


def dominated(frontier: pd.DataFrame, objectives: Sequence[str]) -> pd.Series:
    """Whether each validated point is beaten on measurement.

    A point is dominated when another validated point or uniform baseline costs no more on every
    objective and measures at least as well, one of them strictly. Points not validated get NA.

    Args:
        frontier: A run's frontier table (``measured_metric`` and the objective columns).
        objectives: The run's objective columns.

    Returns:
        A nullable boolean Series aligned with ``frontier``.
    """
    validated = frontier["measured_metric"].notna().to_numpy()
    costs = frontier[list(objectives)].to_numpy(dtype=float)
    metric = frontier["measured_metric"].to_numpy(dtype=float)
    result = pd.Series(pd.NA, index=frontier.index, dtype="boolean")
    rows = np.flatnonzero(validated)
    for i in rows:
        others = rows[rows != i]
        no_worse = np.all(costs[others] <= costs[i], axis=1) & (metric[others] >= metric[i])
        strictly = np.any(costs[others] < costs[i], axis=1) | (metric[others] > metric[i])
        result.iloc[i] = bool(np.any(no_worse & strictly))
    return result


def unresolved(measured: pd.Series, metric_name: str) -> str | None:
    """Why the measured metric cannot rank configurations, or None when it can: its spread is
    within 3 steps of the smallest difference the held-out set shows (1/N for an accuracy over N
    samples), so a rank correlation with it would be noise."""
    levels = sorted(set(measured.dropna().round(12)))
    if len(levels) < 2:
        return None
    step = min(b - a for a, b in zip(levels, levels[1:]))
    spread = levels[-1] - levels[0]
    if spread > 3 * step:
        return None
    return (
        f"no rank correlation: the measured {metric_name} spans {spread:.4g}, within 3 steps of the {step:.4g} "
        "the held-out set resolves"
    )


def spread(count: int) -> list[int]:
    """0..count-1 in an order whose every prefix covers the range evenly: both ends, then midpoints."""
    if count <= 2:
        return list(range(count))[::-1]
    order, intervals = [count - 1, 0], [(0, count - 1)]
    while intervals:
        low, high = intervals.pop(0)
        if high - low < 2:
            continue
        mid = (low + high) // 2
        order.append(mid)
        intervals += [(low, mid), (mid, high)]
    return order


def _bisection_order(lo: int, hi: int, count: int) -> list[int]:
    """The indices a bisection over ``lo..hi`` may measure, level by level (the first: its next
    midpoint), at most ``count``."""
    order, intervals = [], [(lo, hi)]
    while intervals and len(order) < count:
        low, high = intervals.pop(0)
        if low < high:
            mid = (low + high) // 2
            order.append(mid)
            intervals += [(low, mid), (mid + 1, high)]
    return order


def configuration_key(assignment: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A configuration (layer -> candidate) as a hashable key: one per distinct configuration."""
    return tuple(sorted(assignment.items()))


@dataclass
class DropSearch:
    """Measured evaluations of configurations, bounded and remembered.

    Args:
        omega: The run's omega table.
        costs: The run's cost table.
        objective: The cost column to make cheap.
        budgets: Limits every configuration meets (the device's capacities, the user's budgets).
        target: The least acceptable metric (float metric minus the drop); None to only refine.
        max_evals: Evaluations this search may spend in all, the float model's included.
        spent: Evaluations spent before (the float model's, a resumed run's stored points).
        measure: ``measure(solution) -> metric``: evaluates a configuration (and stores it).
        known: Configuration -> (objective cost, metric) measured before, so nothing is
            measured twice.
        replay: Configuration -> metric measured by this search before it was interrupted. A
            resumed search runs its phases again from the start: a configuration found here is
            taken from here, not measured again, but counts as spent when it is asked for, as it
            did then; so the resumed search makes the choices, and spends the evaluations, of
            one never interrupted (with ``known``, it would begin knowing what it measured
            later, and choose otherwise).
        width: Evaluations that can run at once (an executor's workers). Above 1, before each
            measurement of the bisection, the covering and the local repair, ``ahead`` gets
            the configuration measured now and at most ``width - 1`` it may measure next,
            most likely first: an executor starts them early (and drops those it started
            before that are no longer among them). What is measured, and in which order,
            stays what one evaluation at a time measures.
        ahead: ``ahead(solutions)``: the evaluations to have running (see ``width``).
    """

    omega: pd.DataFrame
    costs: pd.DataFrame
    objective: str
    budgets: Mapping[str, float]
    target: float | None
    max_evals: int
    spent: int
    measure: Callable[[solvers.Solution], float]
    known: dict[tuple, tuple[float, float]] = field(default_factory=dict)
    replay: dict[tuple, float] = field(default_factory=dict)
    width: int = 1
    ahead: Callable[[Sequence[solvers.Solution]], None] = lambda solutions: None
    #: (layer, candidate) pairs whose move broke the drop: the proxy misjudged them.
    misjudged: set[tuple[str, str]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._omega = self.omega.set_index(["layer", "candidate"])["omega"]
        self._cost = self.costs.set_index(["layer", "candidate"])[self.objective]
        self._offered = self.costs.groupby("layer", sort=False)["candidate"].apply(list).to_dict()
        self._cheapest_cost = float(self._cost.groupby(level="layer").min().sum())  # every layer at its cheapest

    @property
    def left(self) -> int:
        return self.max_evals - self.spent

    def metric(self, solution: solvers.Solution) -> float | None:
        """The measured metric of a configuration: remembered, measured now, or None when no
        evaluation is left."""
        key = configuration_key(solution.assignment)
        if key not in self.known:
            if self.left <= 0:
                return None
            value = self.replay.pop(key) if key in self.replay else self.measure(solution)
            self.known[key] = (solution.costs[self.objective], value)
            self.spent += 1
        return self.known[key][1]

    def _ahead(self, now: solvers.Solution, likely: Sequence[solvers.Solution]) -> None:
        """Hand ``now`` and at most ``width - 1`` of ``likely`` not measured yet to ``ahead``
        (those to replay are not measured again)."""
        if self.width > 1 and self.left > 0:
            fresh = [s for s in likely if configuration_key(s.assignment) not in self.known]
            wanted = [now, *fresh[: min(self.width - 1, self.left - 1)]]
            self.ahead([s for s in wanted if configuration_key(s.assignment) not in self.replay])

    def feasible(self, solution: solvers.Solution) -> bool | None:
        value = self.metric(solution)
        return None if value is None else value >= self.target

    def bisect(self, proxy: Sequence[solvers.Solution]) -> solvers.Solution | None:
        """The cheapest point of the proxy frontier (ascending cost) within the drop, by bisection;
        None when even the most expensive one is not (or cannot be measured)."""
        lo, hi = 0, len(proxy) - 1
        self._ahead(proxy[hi], [proxy[i] for i in _bisection_order(lo, hi, self.width)])
        if not self.feasible(proxy[hi]):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            self._ahead(proxy[mid], [proxy[i] for i in _bisection_order(lo, hi, self.width + 1)[1:]])
            verdict = self.feasible(proxy[mid])
            if verdict is None:
                break
            lo, hi = (lo, mid) if verdict else (mid + 1, hi)
        return proxy[hi]

    def cover(self, proxy: Sequence[solvers.Solution], points: int) -> None:
        """Measure up to ``points`` configurations of the proxy frontier (ascending cost; those
        measured before count) where the measured frontier gains most: both ends, then, again and
        again, the point halfway between the two neighbouring measured ones whose step (cost
        apart times metric apart, the most area a point between them can add) is widest."""
        keys = [configuration_key(p.assignment) for p in proxy]
        for index in (len(proxy) - 1, 0):
            if sum(key in self.known for key in keys) >= points or self.metric(proxy[index]) is None:
                return
        while sum(key in self.known for key in keys) < points:
            measured = [(i, *self.known[key]) for i, key in enumerate(keys) if key in self.known]
            steps = [
                (abs(high_metric - low_metric) * (high_cost - low_cost), high_cost - low_cost, low, high)
                for (low, low_cost, low_metric), (high, high_cost, high_metric) in zip(measured, measured[1:])
                if high - low > 1
            ]
            if not steps:
                return
            steps.sort(reverse=True)
            *_, low, high = steps[0]
            mid = (low + high) // 2
            # Next, most likely: the halves of this step, then the next widest steps.
            likely = [(low + mid) // 2, (mid + high) // 2] + [(a + b) // 2 for *_, a, b in steps[1:]]
            self._ahead(proxy[mid], [proxy[i] for i in likely if i not in (low, mid, high)])
            if self.metric(proxy[mid]) is None:
                return

    def _moves(self, assignment: Mapping[str, str]) -> list[tuple[float, str, str]]:
        """One-layer moves to a cheaper candidate, least predicted loss per cost saved first."""
        moves = []
        for layer, current in assignment.items():
            here_cost, here_omega = self._cost[layer, current], self._omega[layer, current]
            for candidate in self._offered[layer]:
                saved = here_cost - self._cost[layer, candidate]
                if saved <= 0 or (layer, candidate) in self.misjudged:
                    continue
                moves.append((max(self._omega[layer, candidate] - here_omega, 0.0) / saved, layer, candidate))
        return sorted(moves)

    def _solution(self, assignment: Mapping[str, str]) -> solvers.Solution | None:
        """The configuration's costs and predicted loss; None when it breaks a budget."""
        solution = solvers.solve(self.omega, self.costs, {}, fixed=dict(assignment))
        within = all(solution.costs.get(name, 0.0) <= limit * (1 + 1e-9) for name, limit in self.budgets.items())
        return solution if within else None

    def descend(self, start: solvers.Solution, accept: Callable[[solvers.Solution, float], bool]) -> solvers.Solution:
        """Take one-layer moves from ``start`` while evaluations last: a move whose metric
        ``accept(moved, metric)`` takes becomes the new start; one it refuses marks the move
        misjudged."""
        current = start
        while self.left > 0:
            moves = self._moves(current.assignment)
            for i, (_, layer, candidate) in enumerate(moves):
                moved = self._solution({**current.assignment, layer: candidate})
                if moved is None:
                    continue
                if self.width > 1:  # the next moves of the list: measured next if this one is refused
                    following = (self._solution({**current.assignment, m: c}) for _, m, c in moves[i + 1 :])
                    self._ahead(moved, list(islice((s for s in following if s is not None), self.width - 1)))
                value = self.metric(moved)
                if value is None:
                    return current
                if accept(moved, value):
                    current = moved
                    break
                # Every cheaper candidate of this layer is at least as coarse: assume no better.
                self.misjudged |= {
                    (layer, c) for c in self._offered[layer] if self._cost[layer, c] <= self._cost[layer, candidate]
                }
            else:
                return current  # no move left to try
        return current

    def cheapest_within_drop(self, proxy: Sequence[solvers.Solution]) -> solvers.Solution | None:
        """Bisection over the proxy frontier, then local repair of the point it found."""
        found = self.bisect(proxy)
        if found is None:
            return None
        return self.descend(found, lambda _, value: value >= self.target)

    def refine(self, extra: int, pool: Sequence[solvers.Solution] = ()) -> None:
        """Spend ``extra`` more evaluations pushing the measured frontier outward where it gains
        most. Each evaluation fills the widest step of the measured frontier (the area between a
        frontier point and the next cheaper one, down to the target; shrunk by the evaluations
        that already failed to extend it there): with the configuration of ``pool`` (the proxy
        frontier's points, the baselines) halfway inside the step when one is left, else with the
        upper point's untried one-layer move of least predicted loss per cost saved. A
        configuration no measured one dominates joins the frontier; once no step has anything
        left to try, the pool's unmeasured configurations, in an order that covers it evenly."""
        self.max_evals = self.spent + extra
        pool = sorted(pool, key=lambda p: p.costs[self.objective])
        # (cost, configuration, solution) of each pool point, computed once for every step's search
        priced = [(p.costs[self.objective], configuration_key(p.assignment), p) for p in pool]
        failures: dict[tuple, int] = {}
        tried: set[tuple[tuple, str, str]] = set()
        while self.left > 0:
            step = self._widest_step(priced, failures, tried)
            if step is None:
                break
            upper, solution = step
            value = self.metric(solution)
            if value is None:
                return
            if not self._extends_frontier(solution, value):
                failures[upper] = failures.get(upper, 0) + 1
        for index in spread(len(pool)):
            if self.left <= 0:
                return
            self.metric(pool[index])

    def _frontier(self) -> list[tuple[float, float, tuple]]:
        """The measured frontier at or above the target: (cost, metric, configuration), ascending cost."""
        floor = self._floor()[1]
        frontier: list[tuple[float, float, tuple]] = []
        for cost, negative, key in sorted((c, -m, key) for key, (c, m) in self.known.items() if m >= floor):
            if not frontier or -negative > frontier[-1][1]:
                frontier.append((cost, -negative, key))
        return frontier

    def _floor(self) -> tuple[float, float]:
        """The bottom left corner of the frontier's first step: the all-cheapest cost, and the
        target metric (without one, the lowest measured)."""
        return self._cheapest_cost, self.target if self.target is not None else min(m for _, m in self.known.values())

    def _widest_step(
        self,
        priced: Sequence[tuple[float, tuple, solvers.Solution]],
        failures: Mapping[tuple, int],
        tried: set[tuple[tuple, str, str]],
    ) -> tuple[tuple, solvers.Solution] | None:
        """The next configuration to measure and the frontier point whose step it fills."""
        frontier = self._frontier()
        floor_cost, floor_metric = self._floor()
        steps = []
        for i, (cost, metric, key) in enumerate(frontier):
            if i == 0:  # a configuration cheaper than one measured below the target is assumed below it too
                left_metric = floor_metric
                left_cost = max([floor_cost, *(c for c, m in self.known.values() if m < floor_metric and c < cost)])
            else:
                left_cost, left_metric = frontier[i - 1][:2]
            area = (cost - left_cost) * (metric - left_metric)
            steps.append((area / (1 + failures.get(key, 0)), left_cost, cost, key))
        for _, left_cost, cost, key in sorted(steps, key=lambda step: step[0], reverse=True):
            inside = [p for c, k, p in priced if left_cost < c < cost and k not in self.known]
            if inside:
                return key, inside[len(inside) // 2]
            assignment = dict(key)
            for _, layer, candidate in self._moves(assignment):
                if (key, layer, candidate) in tried:
                    continue
                tried.add((key, layer, candidate))
                moved = {**assignment, layer: candidate}
                solution = None if configuration_key(moved) in self.known else self._solution(moved)
                if solution is not None:
                    return key, solution
        return None

    def _extends_frontier(self, moved: solvers.Solution, value: float) -> bool:
        cost = moved.costs[self.objective]
        return not any(
            c <= cost and m >= value and (c < cost or m > value)
            for key, (c, m) in self.known.items()
            if key != configuration_key(moved.assignment)
        )
