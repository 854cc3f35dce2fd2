"""``refine``: evaluations spent pushing the measured frontier outward where it gains most.

(The other "refine", :func:`solvers.refine`, is NSGA-II on a measured objective: the ``nsga2``
strategy.) Each evaluation fills the widest step of the measured frontier (the area between a
frontier point and the next cheaper one, down to the floor; shrunk by the evaluations that
already failed to extend it there): with the proxy optimum or stored configuration halfway
inside the step when one is left, else with the upper point's untried one-layer move of least
predicted loss per cost saved. Where the proxy is right this measures its optima; where it
misjudges, the moves find what it missed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import solvers
from mpq._measured_frontier import absolute_drop, configuration_key, spread
from mpq._search.evaluator import Evaluator
from mpq._search.strategies.local import cheapest_within, descend, moves
from mpq._search.strategies.proxy import USABLE_DROP


class FrontierRefinement:
    """``refine``: with a drop, first more local repair of the cheapest configuration within it;
    then the widest steps of the measured frontier above the drop (without one, above the usable
    drop), from the proxy frontier's optima, the stored configurations and one-layer moves; once
    no step has anything left to try, the pool's unmeasured configurations, evenly."""

    def run(self, evaluator: Evaluator) -> None:
        floor = evaluator.floor
        if floor is not None:
            incumbent = cheapest_within(evaluator, floor)
            if incumbent is not None:
                descend(evaluator, incumbent, lambda value: value >= floor, set())
        else:
            floor = evaluator.float_metric - absolute_drop(USABLE_DROP, evaluator.float_metric)
        pool = sorted([*evaluator.proxy(), *evaluator.pool], key=lambda p: p.costs[evaluator.objective])
        _widen(evaluator, pool, floor)
        for index in spread(len(pool)):
            if evaluator.left <= 0:
                break
            evaluator.metric(pool[index])


def _widen(evaluator: Evaluator, pool: Sequence[solvers.Solution], floor: float) -> None:
    """Fill the widest steps of the measured frontier while evaluations last and steps have
    something left to try."""
    # (cost, configuration, solution) of each pool point, computed once for every step's search
    priced = [(p.costs[evaluator.objective], configuration_key(p.assignment), p) for p in pool]
    failures: dict[tuple, int] = {}
    tried: set[tuple[tuple, str, str]] = set()
    while evaluator.left > 0:
        step = _widest_step(evaluator, floor, priced, failures, tried)
        if step is None:
            return
        upper, solution = step
        value = evaluator.metric(solution)
        if value is None:
            return
        if not _extends_frontier(evaluator, solution, value):
            failures[upper] = failures.get(upper, 0) + 1


def _frontier(evaluator: Evaluator, floor: float) -> list[tuple[float, float, tuple]]:
    """The measured frontier at or above ``floor``: (cost, metric, configuration), ascending cost."""
    frontier: list[tuple[float, float, tuple]] = []
    for cost, negative, key in sorted((c, -m, key) for key, (c, m) in evaluator.known.items() if m >= floor):
        if not frontier or -negative > frontier[-1][1]:
            frontier.append((cost, -negative, key))
    return frontier


def _widest_step(
    evaluator: Evaluator,
    floor: float,
    priced: Sequence[tuple[float, tuple, solvers.Solution]],
    failures: Mapping[tuple, int],
    tried: set[tuple[tuple, str, str]],
) -> tuple[tuple, solvers.Solution] | None:
    """The next configuration to measure and the frontier point whose step it fills."""
    known = evaluator.known
    floor_cost = sum(min(evaluator.cost(layer, c) for c in offered) for layer, offered in evaluator.offered.items())
    steps = []
    frontier = _frontier(evaluator, floor)
    for i, (cost, metric, key) in enumerate(frontier):
        if i == 0:  # a configuration cheaper than one measured below the floor is assumed below it too
            left_metric = floor
            left_cost = max([floor_cost, *(c for c, m in known.values() if m < floor and c < cost)])
        else:
            left_cost, left_metric = frontier[i - 1][:2]
        area = (cost - left_cost) * (metric - left_metric)
        steps.append((area / (1 + failures.get(key, 0)), left_cost, cost, key))
    for _, left_cost, cost, key in sorted(steps, key=lambda step: step[0], reverse=True):
        inside = [p for c, k, p in priced if left_cost < c < cost and k not in known]
        if inside:
            return key, inside[len(inside) // 2]
        assignment = dict(key)
        for _, layer, candidate in moves(evaluator, assignment):
            if (key, layer, candidate) in tried:
                continue
            tried.add((key, layer, candidate))
            moved = evaluator.move(assignment, layer, candidate)
            solution = None if configuration_key(moved) in known else evaluator.price(moved)
            if solution is not None:
                return key, solution
    return None


def _extends_frontier(evaluator: Evaluator, moved: solvers.Solution, value: float) -> bool:
    cost, key = moved.costs[evaluator.objective], configuration_key(moved.assignment)
    return not any(
        c <= cost and m >= value and (c < cost or m > value) for k, (c, m) in evaluator.known.items() if k != key
    )
