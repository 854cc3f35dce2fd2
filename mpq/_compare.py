"""Two runs side by side: their frontiers stacked, and the per-layer difference of two points."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from mpq._runs import Run


def compare(first: Run, second: Run, points: tuple[int, int] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two runs side by side.

    Args:
        first: A run.
        second: Another run (another target, model or probe).
        points: One point of each run to diff layer by layer; default: each run's best point.

    Returns:
        ``(frontiers, layers)``: ``frontiers`` stacks both frontiers with a ``run`` column in
        front (columns of the two unioned); ``layers`` has one row per layer of either point:
        ``layer``, ``candidate_first``, ``candidate_second`` (None where the layer is absent),
        ``changed`` (bool).
    """
    frontiers = pd.concat(
        [first.frontier.assign(run=first.id), second.frontier.assign(run=second.id)], ignore_index=True
    )
    frontiers = frontiers[["run", *[c for c in frontiers.columns if c != "run"]]]
    chosen = points or (int(first.best().point), int(second.best().point))
    a, b = first.assignment(chosen[0]), second.assignment(chosen[1])
    layers = pd.DataFrame(
        [{"layer": layer, "candidate_first": a.get(layer), "candidate_second": b.get(layer)} for layer in dict.fromkeys([*a, *b])]
    )
    layers["changed"] = layers["candidate_first"] != layers["candidate_second"]
    layers.attrs["points"] = chosen
    return frontiers, layers
