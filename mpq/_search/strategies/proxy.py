"""Strategies over the proxy frontier (the exact optima of predicted loss, ascending cost).

The proxy ranks gentle quantization well and misjudges the catastrophic end, so these measure
its optima where a user looks: ``frontier`` the points the solver stored, ``region`` the
usable part of the frontier found by bisection, covered where the measured frontier gains most
and, coarser, along the whole cost axis.
"""

from __future__ import annotations

from collections.abc import Sequence

import solvers
from mpq._measured_frontier import absolute_drop, configuration_key
from mpq._search.evaluator import Evaluator

#: Without ``max_drop``, the covering's evaluations go to configurations within this drop of
#: the float metric: further down, a model is rarely one a user deploys.
USABLE_DROP = "10%"


def bisection_order(lo: int, hi: int, count: int) -> list[int]:
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


def bisect(evaluator: Evaluator, proxy: Sequence[solvers.Solution], floor: float) -> solvers.Solution | None:
    """The cheapest point of the proxy frontier (ascending cost) measured at or above ``floor``,
    by bisection, assuming the metric falls as the budget shrinks: about ``log2(len(proxy))``
    evaluations. None when even the most expensive one is not (or cannot be measured)."""
    lo, hi = 0, len(proxy) - 1
    evaluator.ahead(proxy[hi], [proxy[i] for i in bisection_order(lo, hi, evaluator.width)])
    top = evaluator.metric(proxy[hi])
    if top is None or top < floor:
        return None
    while lo < hi:
        mid = (lo + hi) // 2
        evaluator.ahead(proxy[mid], [proxy[i] for i in bisection_order(lo, hi, evaluator.width + 1)[1:]])
        value = evaluator.metric(proxy[mid])
        if value is None:
            break
        lo, hi = (lo, mid) if value >= floor else (mid + 1, hi)
    return proxy[hi]


def cover(evaluator: Evaluator, proxy: Sequence[solvers.Solution], points: int) -> None:
    """Measure up to ``points`` configurations of the proxy frontier (ascending cost; those
    measured before count) where the measured frontier gains most: both ends, then, again and
    again, the point halfway between the two neighbouring measured ones whose step (cost apart
    times metric apart, the most area a point between them can add) is widest."""
    keys = [configuration_key(p.assignment) for p in proxy]
    known = evaluator.known
    for index in (len(proxy) - 1, 0):
        if sum(key in known for key in keys) >= points or evaluator.metric(proxy[index]) is None:
            return
    while sum(key in known for key in keys) < points:
        measured = [(i, *known[key]) for i, key in enumerate(keys) if key in known]
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
        evaluator.ahead(proxy[mid], [proxy[i] for i in likely if i not in (low, mid, high)])
        if evaluator.metric(proxy[mid]) is None:
            return


def sweep(evaluator: Evaluator, proxy: Sequence[solvers.Solution], parts: int, points: int) -> None:
    """Measure up to ``points`` more proxy optima (both ends first) while two neighbouring
    measured ones (in cost order) are more than 1/``parts`` of the frontier's cost range apart
    with an unmeasured optimum between them: the one nearest the middle of the widest such gap
    first. So the parts of the cost axis where the proxy has optima get measured configurations
    below the usable region too, where a user asking ``run.best`` for a small budget looks."""
    if len(proxy) < 2:
        return
    objective, known = evaluator.objective, evaluator.known
    costs = [p.costs[objective] for p in proxy]
    keys = [configuration_key(p.assignment) for p in proxy]
    widest = (costs[-1] - costs[0]) / max(parts, 1)
    stop = evaluator.spent + points
    for index in (0, len(proxy) - 1):
        if evaluator.spent >= stop or evaluator.metric(proxy[index]) is None:
            return
    while evaluator.spent < stop:
        measured = [i for i, key in enumerate(keys) if key in known]
        gaps = [(costs[high] - costs[low], low, high) for low, high in zip(measured, measured[1:]) if high - low > 1]
        gaps = sorted((gap for gap in gaps if gap[0] > widest * (1 + 1e-9)), reverse=True)
        if not gaps:
            return
        _, low, high = gaps[0]
        nearest = _nearest(costs, low, high)
        evaluator.ahead(proxy[nearest], [proxy[_nearest(costs, a, b)] for _, a, b in gaps[1:]])
        if evaluator.metric(proxy[nearest]) is None:
            return


def _nearest(costs: Sequence[float], low: int, high: int) -> int:
    """The index strictly between ``low`` and ``high`` whose cost is nearest their middle."""
    middle = (costs[low] + costs[high]) / 2
    return min(range(low + 1, high), key=lambda i: (abs(costs[i] - middle), i))


class ProxyPoints:
    """``frontier``: the configurations the solver stored before any was measured (its frontier
    points in an order that covers them evenly, or the one optimum within the budgets, then the
    uniform baselines). The evaluations are independent: all of them start at once."""

    def run(self, evaluator: Evaluator) -> None:
        pool = list(evaluator.pool)
        keys = [configuration_key(s.assignment) for s in pool]
        todo = list(dict.fromkeys(k for k in keys if k not in evaluator.known))
        first = {key: solution for key, solution in reversed(list(zip(keys, pool)))}
        if todo:
            evaluator.ahead(first[todo[0]], [first[k] for k in todo[1:]], count=evaluator.left - 1)
        for solution in pool:
            if evaluator.metric(solution) is None:
                break  # max_evals spent


class Covering:
    """``region``: bisection over the dense proxy frontier finds its cheapest point within the
    usable drop (10 % of the float metric); up to two thirds of ``max_points`` proxy points from
    there to the most precise one are measured where the measured frontier gains most; then up
    to half of ``max_points`` more sweep the whole frontier, so that no part of its cost axis
    1/``max_points`` wide with optima in it goes unmeasured; ``max_points`` configurations in
    all, the bisection's included (with a named ``max_evals``, the covering is left to
    refinement and the sweep gets half of what is left). Without any point within the usable
    drop, the whole proxy frontier is the region."""

    def run(self, evaluator: Evaluator) -> None:
        proxy = evaluator.proxy()
        floor = evaluator.float_metric - absolute_drop(USABLE_DROP, evaluator.float_metric)
        named = evaluator.budget_named
        total = evaluator.max_points
        # Without a named max_evals, max_points bounds every configuration measured here, the
        # bisection's included (the uniform baselines are measured after, by ``frontier``).
        with evaluator.at_most(None if named else total):
            boundary = bisect(evaluator, proxy, floor)
            if not named:
                cover(evaluator, proxy[proxy.index(boundary) :] if boundary is not None else proxy, total - total // 3)
            points = total // 2
            sweep(evaluator, proxy, total, min(points, evaluator.left // 2) if named else points)
