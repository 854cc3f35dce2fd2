"""``greedy``: AIMET's automatic mixed precision (AMP), built from its description.

Phase 1 measures each layer alone at each cheaper candidate, every other layer at its most
expensive one (all-highest), in layer order; phase 2 sorts those changes by measured drop per
cost saved on the objective (AMP's greedy order, with BOPs replaced by the objective), applies
them cumulatively and finds the longest prefix within the drop by bisection. When the
evaluations left cannot pay for all of phase 1, it stops early in layer order, leaving what
phase 2's bisection needs over the changes measured so far.
"""

from __future__ import annotations

import math

from mpq._measured_frontier import absolute_drop
from mpq._search.evaluator import Evaluator
from mpq._search.strategies.proxy import USABLE_DROP


class Greedy:
    """``greedy``: AMP's two phases within the drop (without one, within the usable drop)."""

    def run(self, evaluator: Evaluator) -> None:
        floor = evaluator.floor
        if floor is None:
            floor = evaluator.float_metric - absolute_drop(USABLE_DROP, evaluator.float_metric)
        # Most expensive first; equal costs from the least predicted loss down.
        # A fused set is one change, ranked by its first layer.
        ranked = {
            layer: sorted(offered, key=lambda c, layer=layer: (-evaluator.cost(layer, c), evaluator.omega_of(layer, c)))
            for layer, offered in evaluator.offered.items()
            if evaluator.group(layer)[0] == layer
        }
        highest = evaluator.price({layer: ranked[evaluator.group(layer)[0]][0] for layer in evaluator.offered})
        if highest is None:
            return  # all-highest breaks a budget: AMP has no start
        base = evaluator.metric(highest)
        if base is None:
            return
        top = highest.assignment
        changes = [
            (layer, candidate)
            for layer in ranked
            for candidate in ranked[layer][1:]
            if evaluator.cost(layer, candidate) < evaluator.cost(layer, top[layer])
        ]
        phase1 = len(changes)
        while phase1 > 0 and phase1 + math.ceil(math.log2(phase1 + 1)) > evaluator.left:
            phase1 -= 1
        measured = []
        for layer, candidate in changes[:phase1]:
            alone = evaluator.price(evaluator.move(top, layer, candidate))
            value = None if alone is None else evaluator.metric(alone)
            if value is not None:
                saved = sum(
                    evaluator.cost(member, top[member]) - evaluator.cost(member, candidate)
                    for member in evaluator.group(layer)
                )
                measured.append(((base - value) / saved, -saved, layer, candidate))
        if base < floor:
            return  # not even all-highest is within the drop
        configurations, current = [highest], dict(top)
        for _, _, layer, candidate in sorted(measured, key=lambda m: m[:2]):
            if evaluator.cost(layer, candidate) < evaluator.cost(layer, current[layer]):
                current = evaluator.move(current, layer, candidate)
                priced = evaluator.price(current)
                if priced is not None:
                    configurations.append(priced)
        low, high = 0, len(configurations) - 1  # configurations[low] is known within the drop
        while low < high:
            middle = (low + high + 1) // 2
            value = evaluator.metric(configurations[middle])
            if value is None:
                return
            low, high = (middle, high) if value >= floor else (low, middle - 1)
