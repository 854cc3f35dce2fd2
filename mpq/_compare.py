"""Two runs side by side: their frontiers stacked, and the per-layer difference of two points."""

from __future__ import annotations

from numbers import Integral
from typing import TYPE_CHECKING

import pandas as pd

from mpq._export import check_run
from mpq.exceptions import InvalidParameterError

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

    Raises:
        InvalidParameterError: ``first`` or ``second`` is not a Run, or ``points`` not a pair of ints.
    """
    check_run("compare", "first", first)
    check_run("compare", "second", second)
    if points is not None and not (
        isinstance(points, (tuple, list))
        and len(points) == 2
        and all(isinstance(p, Integral) and not isinstance(p, bool) for p in points)
    ):
        raise InvalidParameterError(
            f"The 'points' parameter of compare must be a pair of point numbers (first's, second's) or None. "
            f"Got {points!r} instead."
        )
    frontiers = pd.concat(
        [first.frontier.assign(run=first.id), second.frontier.assign(run=second.id)], ignore_index=True
    )
    frontiers = frontiers[["run", *[c for c in frontiers.columns if c != "run"]]]
    chosen = points or (int(first.best().point), int(second.best().point))
    a, b = first.assignment(chosen[0]), second.assignment(chosen[1])
    layers = pd.DataFrame(
        [
            {"layer": layer, "candidate_first": a.get(layer), "candidate_second": b.get(layer)}
            for layer in dict.fromkeys([*a, *b])
        ]
    )
    layers["changed"] = layers["candidate_first"] != layers["candidate_second"]
    layers.attrs["points"] = chosen
    return frontiers, layers
