"""Which uniform configuration a search given a drop measures next, and how many evaluations
settling them all can take at worst.

A uniform configuration cheaper than the incumbent is settled once measured, or once a measured
configuration at least as precise on every layer is outside the drop. Measuring one, ``u``, can
go two ways: within the drop, it becomes the incumbent and only the uniforms cheaper than it stay
unsettled; outside it, it settles every uniform it is at least as precise as. So the uniforms are
searched like a sorted list, not walked one by one: nine candidates whose precision rises with
their cost take four evaluations at worst, not eight. The evaluations this worst case needs are
what a search holds back from its strategies (:meth:`Evaluator.owed`), and the order that
achieves it is the one the search measures in last (:func:`cheaper_uniforms`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

#: Above this many unsettled uniforms the worst case is taken as one evaluation each (the exact
#: count walks every subset: 2^10 of them here, milliseconds).
EXACT_LIMIT = 10


class UniformSearch:
    """The worst-case evaluations and the next measurement of a set of unsettled uniforms.

    Args:
        costs: Uniform label -> its cost on the search's objective.
        covers: ``covers(u, v)``: whether uniform ``u`` is at least as precise as ``v`` on every
            layer (so ``u`` measured outside the drop shows ``v`` outside it).
    """

    def __init__(self, costs: Mapping[str, float], covers: Callable[[str, str], bool]) -> None:
        self._cost = dict(costs)
        # per uniform: those cheaper than it, and those it settles measured outside (itself included)
        self._cheaper = {u: frozenset(v for v in costs if costs[v] < costs[u]) for u in costs}
        self._covered = {u: frozenset(v for v in costs if v == u or covers(u, v)) for u in costs}
        self._worst: dict[frozenset[str], tuple[int, str | None]] = {}
        self._reserve: dict[frozenset[str], int] = {}

    def _outcomes(self, unsettled: frozenset[str], label: str) -> tuple[frozenset[str], frozenset[str]]:
        """What stays unsettled after measuring ``label``: (within the drop, outside it)."""
        return unsettled & self._cheaper[label], unsettled - self._covered[label]

    def _solve(self, unsettled: frozenset[str]) -> tuple[int, str | None]:
        """(evaluations at worst, the measurement that achieves it), whatever each one measures."""
        if not unsettled:
            return 0, None
        if unsettled not in self._worst:
            best = None
            for label in sorted(unsettled, key=lambda v: (self._cost[v], v)):  # ties: the cheapest
                within, outside = self._outcomes(unsettled, label)
                worst = 1 + max(self._solve(within)[0], self._solve(outside)[0])
                if best is None or worst < best[0]:
                    best = (worst, label)
            self._worst[unsettled] = best
        return self._worst[unsettled]

    def next(self, unsettled: frozenset[str]) -> str | None:
        """The uniform to measure next so that settling them all takes the fewest evaluations at worst."""
        if len(unsettled) > EXACT_LIMIT:
            return min(unsettled, key=lambda v: (self._cost[v], v))
        return self._solve(unsettled)[1]

    def reserve(self, unsettled: frozenset[str]) -> int:
        """Evaluations to hold back for ``unsettled``: the worst case of the worst of its subsets.

        The subsets' worst counts, not the set's own: a strategy's measurement only ever settles
        uniforms (a cheaper incumbent, a configuration measured outside the drop), and what is
        held back must never grow when it does, or the evaluations a strategy just spent would be
        owed to the uniforms.
        """
        if len(unsettled) > EXACT_LIMIT:
            return len(unsettled)
        if unsettled not in self._reserve:
            self._reserve[unsettled] = max(
                [self._solve(unsettled)[0], *(self.reserve(unsettled - {v}) for v in unsettled)]
            )
        return self._reserve[unsettled]
