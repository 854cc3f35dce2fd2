"""What every search given a drop does last, whatever its strategies: measure each uniform
configuration cheaper than the incumbent (the cheapest measured within the drop), unless a
measured configuration at least as precise on every layer shows it outside the drop.

A uniform configuration is what a user tries first; a search that keeps a costlier answer
without having measured it has not answered the question. The evaluations it may need are held
back from the strategies (:meth:`Evaluator.owed`), so no strategy can spend them.
"""

from __future__ import annotations

from mpq._search.evaluator import Evaluator
from mpq._search.strategies.local import cheapest_within


def cheaper_uniforms(evaluator: Evaluator) -> None:
    """Measure, cheapest first, every uniform configuration cheaper than the incumbent that no
    measurement shows outside the drop (:meth:`Evaluator.shown_outside`); one within the drop
    becomes the incumbent, so the costlier ones are no longer cheaper."""
    floor = evaluator.floor
    evaluator.owing = False
    if floor is None:
        return
    for solution in sorted(evaluator.uniforms.values(), key=lambda s: s.costs[evaluator.objective]):
        incumbent = cheapest_within(evaluator, floor)
        cheaper = incumbent is None or solution.costs[evaluator.objective] < incumbent.costs[evaluator.objective]
        if cheaper and not evaluator.shown_outside(solution):
            evaluator.metric(solution)
