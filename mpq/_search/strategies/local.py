"""``drop``: the cheapest configuration within an allowed drop, by bisection and local repair.

1. **Bisection over exact solves.** The proxy frontier is searched for its cheapest point whose
   measured metric is within the drop (:func:`~mpq._search.strategies.proxy.bisect`).
2. **Local repair.** From that point, one-layer moves to a cheaper candidate, in the order of
   least predicted loss per unit of cost saved, are measured one at a time; a move that keeps
   the metric within the drop is taken, one that breaks it marks that layer's candidate (and
   every cheaper one of that layer) as misjudged by the proxy and is never tried again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from itertools import islice

import solvers
from mpq._search.evaluator import Evaluator
from mpq._search.strategies.proxy import bisect


def moves(
    evaluator: Evaluator, assignment: Mapping[str, str], misjudged: set[tuple[str, str]] = frozenset()
) -> list[tuple[float, str, str]]:
    """One-layer moves to a cheaper candidate, least predicted loss per cost saved first:
    (loss per cost saved, layer, candidate), leaving out the ``misjudged`` pairs. A fused set
    moves as one (named by its first layer; its cost and loss summed over its layers)."""
    found = []
    for layer, current in assignment.items():
        group = evaluator.group(layer)
        if layer != group[0]:
            continue
        here_cost = sum(evaluator.cost(member, current) for member in group)
        here_omega = sum(evaluator.omega_of(member, current) for member in group)
        for candidate in evaluator.offered[layer]:
            saved = here_cost - sum(evaluator.cost(member, candidate) for member in group)
            if saved <= 0 or (layer, candidate) in misjudged:
                continue
            omega = sum(evaluator.omega_of(member, candidate) for member in group)
            found.append((max(omega - here_omega, 0.0) / saved, layer, candidate))
    return sorted(found)


def descend(
    evaluator: Evaluator,
    start: solvers.Solution,
    accept: Callable[[float], bool],
    misjudged: set[tuple[str, str]],
) -> solvers.Solution:
    """Take one-layer moves from ``start`` while evaluations last: a move whose metric ``accept``
    takes becomes the new start; one it refuses marks its layer's candidate, and every cheaper
    one of that layer, ``misjudged`` (assumed no better)."""
    current = start
    while evaluator.left > 0:
        listed = moves(evaluator, current.assignment, misjudged)
        for i, (_, layer, candidate) in enumerate(listed):
            moved = evaluator.price(evaluator.move(current.assignment, layer, candidate))
            if moved is None:
                continue
            if evaluator.width > 1:  # the next moves of the list: measured next if this one is refused
                following = (evaluator.price(evaluator.move(current.assignment, m, c)) for _, m, c in listed[i + 1 :])
                evaluator.ahead(moved, list(islice((s for s in following if s is not None), evaluator.width - 1)))
            value = evaluator.metric(moved)
            if value is None:
                return current
            if accept(value):
                current = moved
                break
            misjudged |= {
                (layer, c)
                for c in evaluator.offered[layer]
                if evaluator.cost(layer, c) <= evaluator.cost(layer, candidate)
            }
        else:
            return current  # no move left to try
    return current


def cheapest_within(evaluator: Evaluator, floor: float) -> solvers.Solution | None:
    """The cheapest configuration measured at or above ``floor`` (the incumbent), or None."""
    within = [(cost, key) for key, (cost, metric) in evaluator.known.items() if metric >= floor]
    return evaluator.price(dict(min(within)[1])) if within else None


class CheapestWithinDrop:
    """``drop``: bisection over the proxy frontier for its cheapest point within the drop, then
    local repair from it while evaluations last. Needs ``max_drop``."""

    def run(self, evaluator: Evaluator) -> None:
        floor = evaluator.floor
        found = bisect(evaluator, evaluator.proxy(), floor)
        if found is not None:
            descend(evaluator, found, lambda value: value >= floor, set())
