"""Two runs side by side: their frontiers stacked, and the per-layer difference of two points."""

from __future__ import annotations

import json
from numbers import Integral
from typing import TYPE_CHECKING

import pandas as pd

from mpq._export import check_run
from mpq._measured_frontier import configuration_key
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


def setting_differences(first: Run, second: Run) -> pd.DataFrame:
    """What the two runs were searched with that differs: one row per setting (``setting``,
    ``first``, ``second``): the task, model and data hashes, metric, target, objectives, budgets,
    candidates, the probe's settings (``probe.tolerance``...) and the search's; empty when none does."""

    def settings(run: Run) -> dict[str, object]:
        record = run.record
        found = {
            "task": record["task_name"],
            "model": record["model_hash"],
            "data": record["data_hash"],
            "metric": record["metric_name"],
            "target": run.target,
            "objectives": ", ".join(run.objectives),
            "budgets": record["budgets"] or None,
        }
        for name, value in record["settings"].items():
            if name == "probe":  # its stored JSON: one setting per field
                found.update({f"probe.{k}": v for k, v in json.loads(value)["data"].items()})
            elif name != "target":
                found[name] = ", ".join(value) if isinstance(value, list) else value
        return found

    a, b = settings(first), settings(second)
    rows = [(name, a.get(name), b.get(name)) for name in dict.fromkeys([*a, *b]) if a.get(name) != b.get(name)]
    return pd.DataFrame(rows, columns=["setting", "first", "second"], dtype=object)


def same_points(first: Run, second: Run) -> bool:
    """Whether the two runs hold the same points: the same configurations with the same label,
    predicted loss, costs and measured metric (point numbers aside)."""

    def points(run: Run) -> pd.DataFrame:
        frontier = run.frontier.assign(
            configuration=[str(configuration_key(run.assignment(int(p)))) for p in run.frontier["point"]]
        )
        frontier = frontier.drop(columns="point")
        return frontier.sort_values([*frontier.columns]).reset_index(drop=True)

    a, b = points(first), points(second)
    return list(a.columns) == list(b.columns) and a.equals(b)
