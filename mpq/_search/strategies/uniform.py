"""What every search given a drop does last, whatever its strategies: measure each uniform
configuration cheaper than the incumbent (the cheapest measured within the drop), unless a
measured configuration at least as precise on every layer shows it outside the drop; in the
order of :mod:`mpq._search.uniform_search`, a search over them, not a walk.

A uniform configuration is what a user tries first; a search that keeps a costlier answer
without having measured it has not answered the question. The evaluations it may need are held
back from the strategies (:meth:`Evaluator.owed`), so no strategy can spend them.
"""

from __future__ import annotations

from mpq._search.evaluator import Evaluator


def cheaper_uniforms(evaluator: Evaluator) -> None:
    """Measure the uniform configurations cheaper than the incumbent that no measurement shows
    outside the drop (:meth:`Evaluator.unsettled`), each next one the :class:`UniformSearch`
    pick that settles the rest in the fewest evaluations at worst: one within the drop becomes
    the incumbent, so the costlier ones are no longer cheaper; one outside it shows outside
    those it is at least as precise as."""
    evaluator.owing = False
    if evaluator.floor is None:
        return
    while (label := evaluator.uniform_search.next(evaluator.unsettled())) is not None:
        if evaluator.metric(evaluator.uniforms[label]) is None:
            return
