"""The measured frontier: dominance on what was measured, the allowed drop, and whether the
held-out set resolves the differences measured. (Which configurations a search measures: the
strategies of ``mpq._search.strategies``.)"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np
import pandas as pd

from mpq._param_checks import Interval
from mpq.exceptions import InvalidParameterError
from mpqvocab import parameter_message

T = TypeVar("T")


def absolute_drop(max_drop: float | str, float_metric: float, func: str = "search") -> float:
    """``max_drop`` in metric units: a number is one already, ``"1%"`` is relative to ``float_metric``.

    Raises:
        InvalidParameterError: negative, not a number, or a relative drop of 100 % or more.
    """
    check_drop(max_drop, func)
    if isinstance(max_drop, str):
        return float(max_drop.strip().removesuffix("%")) / 100 * abs(float_metric)
    return float(max_drop)


def metric_drop(float_metric: float, metric: T, higher_is_better: bool = True) -> T:
    """How much worse than the float model's ``metric`` measures: a fall of a higher-is-better
    metric, a rise of a lower-is-better one (a number or a Series of them)."""
    return float_metric - metric if higher_is_better else metric - float_metric


def higher_is_better(record: Mapping) -> bool:
    """The metric direction a stored run recorded (runs stored before it was: higher is better)."""
    return bool((record.get("settings") or {}).get("higher_is_better", True))


def check_drop(max_drop: object, func: str = "search") -> None:
    """Check ``max_drop``: a number >= 0 (metric units), or a string ``"<p>%"`` with 0 <= p < 100."""
    if isinstance(max_drop, str):
        text = max_drop.strip()
        try:
            ok = text.endswith("%") and 0 <= float(text.removesuffix("%")) < 100
        except ValueError:
            ok = False
    else:
        ok = Interval(float, 0, float("inf"), closed="left").accepts(max_drop)
    if not ok:
        raise InvalidParameterError(
            parameter_message(
                func,
                "max_drop",
                "a number >= 0 in metric units or a percentage of the float metric below 100%, such as 0.01 or '1%'",
                max_drop,
            )
        )


def dominated(frontier: pd.DataFrame, objectives: Sequence[str], *, higher_is_better: bool = True) -> pd.Series:
    """Whether each validated point is beaten on measurement.

    A point is dominated when another validated point or uniform baseline costs no more on every
    objective and measures at least as well, one of them strictly. Points not validated get NA.

    Args:
        frontier: A run's frontier table (``measured_metric`` and the objective columns).
        objectives: The run's objective columns.
        higher_is_better: The metric's direction (False: a lower perplexity measures better).

    Returns:
        A nullable boolean Series aligned with ``frontier``.
    """
    validated = frontier["measured_metric"].notna().to_numpy()
    costs = frontier[list(objectives)].to_numpy(dtype=float)
    metric = frontier["measured_metric"].to_numpy(dtype=float) * (1 if higher_is_better else -1)
    result = pd.Series(pd.NA, index=frontier.index, dtype="boolean")
    rows = np.flatnonzero(validated)
    for i in rows:
        others = rows[rows != i]
        no_worse = np.all(costs[others] <= costs[i], axis=1) & (metric[others] >= metric[i])
        strictly = np.any(costs[others] < costs[i], axis=1) | (metric[others] > metric[i])
        result.iloc[i] = bool(np.any(no_worse & strictly))
    return result


#: The largest held-out set whose step (1/N, an accuracy over N samples) is read off the values.
MAX_HELD_OUT = 10_000


def held_out_step(levels: Sequence[float]) -> float | None:
    """The smallest difference the held-out set can show: 1/N for the least N (up to
    :data:`MAX_HELD_OUT`) of which every value is a multiple, to float32 rounding (an accuracy
    over N samples); else the least difference between 3 or more values; else None (two values
    of a continuous metric say nothing of it: their difference is the spread itself)."""
    values = np.asarray(levels, dtype=float)
    sizes = np.arange(1, MAX_HELD_OUT + 1)[:, None]
    counts = values[None, :] * sizes
    fits = np.all(np.abs(counts - np.round(counts)) <= 1e-7 * sizes, axis=1)
    if fits.any():
        return 1 / float(sizes[fits.argmax(), 0])
    return float(np.diff(np.sort(values)).min()) if len(values) >= 3 else None


def unresolved(measured: pd.Series, metric_name: str) -> str | None:
    """Why the measured metric cannot rank configurations, or None when it can: every point
    measures the same, or its spread is within 3 steps of the smallest difference the held-out
    set shows (:func:`held_out_step`), so a rank correlation with it would be noise."""
    levels = sorted(set(measured.dropna().round(12)))
    if len(levels) == 1 and measured.notna().sum() > 1:
        return f"no rank correlation: every point measures the same {metric_name}, {levels[0]:.4g}"
    step = held_out_step(levels) if len(levels) > 1 else None
    spread = levels[-1] - levels[0] if levels else 0.0
    if step is None or spread / step > 3 + 1e-3:  # the values are float32 sums: 3 steps may read 3.00001
        return None
    steps = round(spread / step)
    if steps == 1:
        return f"no rank correlation: the measured {metric_name} spans {spread:.4g}, the least difference the held-out set resolves"
    return (
        f"no rank correlation: the measured {metric_name} spans {spread:.4g}, {steps} steps of the {step:.4g} the "
        "held-out set resolves (3 or fewer)"
    )


def spread(count: int) -> list[int]:
    """0..count-1 in an order whose every prefix covers the range evenly: both ends, then midpoints."""
    if count <= 2:
        return list(range(count))[::-1]
    order, intervals = [count - 1, 0], [(0, count - 1)]
    while intervals:
        low, high = intervals.pop(0)
        if high - low < 2:
            continue
        mid = (low + high) // 2
        order.append(mid)
        intervals += [(low, mid), (mid, high)]
    return order


def configuration_key(assignment: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """A configuration (layer -> candidate) as a hashable key: one per distinct configuration."""
    return tuple(sorted(assignment.items()))


def configuration_keys(assignments: pd.DataFrame) -> dict[int, tuple[tuple[str, str], ...]]:
    """Each point's :func:`configuration_key`, from the points' ``layer`` and ``candidate`` rows."""
    return {
        point: configuration_key(dict(zip(rows["layer"], rows["candidate"])))
        for point, rows in assignments.groupby("point")
    }


def distinct_configurations(frontier: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``frontier`` with each configuration once (the first point of each), as the
    run's tables list them; ``assignments`` holds the points' ``layer`` and ``candidate`` rows."""
    key = configuration_keys(assignments)
    first = ~pd.Series([key.get(point, point) for point in frontier["point"]], index=frontier.index).duplicated()
    return frontier[first]
