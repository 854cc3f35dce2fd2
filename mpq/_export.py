"""A point of a run, written for other tools: plain JSON, HAWQ-V3's bit_config, a Hugging Face
style ``quantization_config``; and two runs side by side."""

from __future__ import annotations

from numbers import Integral
from typing import Any

import pandas as pd

from mpq._formats import NumberFormat, get_candidate
from mpq._runs import Run, cost_columns
from mpq._validation import unknown_name
from mpq.exceptions import InvalidParameterError
from mpq.version import __version__

EXPORT_FORMATS = ("json", "hawq", "hf")


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def _is_int(value: Any) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _point_row(run: Run, point: int) -> pd.Series:
    rows = run.frontier[run.frontier["point"] == point]
    if rows.empty:
        raise InvalidParameterError(
            f"run {run.id} has no point {point!r}; choose one of {', '.join(map(str, run.frontier['point']))}."
        )
    return rows.iloc[0]


def _format_spec(fmt: NumberFormat) -> dict[str, Any]:
    return {
        "format": fmt.name, "type": fmt.family, "num_bits": fmt.element_bits, "bits_per_value": fmt.bits_per_value,
        "strategy": fmt.granularity, "group_size": fmt.group_size, "symmetric": True,
    }


def _check_run(func: str, name: str, run: Any) -> None:
    if not isinstance(run, Run):
        raise InvalidParameterError(
            f"The {name!r} parameter of {func} must be an mpq.Run (mpq.open_run). Got {type(run).__name__} instead."
        )


def export(run: Run, point: int, to: str = "json") -> dict[str, Any]:
    """One point of a run as a document another tool reads.

    Args:
        run: The run (``mpq.open_run``).
        point: A value of ``run.frontier["point"]``.
        to: ``json`` (layer -> weight and activation formats, with the point's predicted loss,
            costs and measured metric), ``hawq`` (HAWQ-V3's ``bit_config`` dictionary: layer ->
            integer weight bits; INT formats only), or ``hf`` (a Hugging Face style
            ``quantization_config`` with a per-layer format map).

    Returns:
        The document, JSON-serialisable.

    Raises:
        UnknownNameError: ``to`` is not one of json, hawq, hf.
        InvalidParameterError: ``run`` is not a Run, ``to`` not a str, no such point, or ``hawq`` for a
            point with non-INT weights.
    """
    _check_run("export", "run", run)
    if not isinstance(to, str):
        raise InvalidParameterError(
            f"The 'to' parameter of export must be a str among {', '.join(EXPORT_FORMATS)}. "
            f"Got {type(to).__name__} instead."
        )
    if to not in EXPORT_FORMATS:
        raise unknown_name("export format", to, EXPORT_FORMATS)
    row = _point_row(run, point)
    assignment = run.assignment(point)
    candidates = {layer: get_candidate(name) for layer, name in assignment.items()}
    if to == "hawq":
        not_int = sorted({c.name for c in candidates.values() if c.weight_format.family != "int"})
        if not_int:
            raise InvalidParameterError(
                f"run {run.id} point {point}: HAWQ-V3's bit_config holds integer bit widths, and this point uses "
                f"{', '.join(not_int)}; export it with --to json or --to hf."
            )
        return {
            f"bit_config_{run.record['task_name']}_run{run.id}_point{point}": {
                layer: c.weight_format.element_bits for layer, c in candidates.items()
            }
        }
    if to == "hf":
        return {
            "quantization_config": {
                "quant_method": "mpq",
                "mpq_version": __version__,
                "source": {"run": run.id, "point": point, "target": run.target},
                "config_groups": {
                    layer: {"weights": _format_spec(c.weight_format), "input_activations": _format_spec(c.act_format)}
                    for layer, c in candidates.items()
                },
            }
        }
    return {
        "mpq_version": __version__,
        "run": run.id,
        "point": point,
        "task": run.record["task_name"],
        "target": run.target,
        "label": row["label"],
        "predicted_loss": _plain(row["predicted_loss"]),
        "measured_metric": _plain(row["measured_metric"]),
        "metric_name": run.record["metric_name"],
        "costs": {c: _plain(row[c]) for c in cost_columns(run.frontier)},
        "layers": {
            layer: {
                "candidate": c.name, "weight_format": c.weight_format.name, "act_format": c.act_format.name,
                "weight_bits": c.weight_format.bits_per_value, "act_bits": c.act_format.bits_per_value,
            }
            for layer, c in candidates.items()
        },
    }


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
    _check_run("compare", "first", first)
    _check_run("compare", "second", second)
    if points is not None and not (
        isinstance(points, (tuple, list)) and len(points) == 2 and all(_is_int(p) for p in points)
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
        [{"layer": layer, "candidate_first": a.get(layer), "candidate_second": b.get(layer)} for layer in dict.fromkeys([*a, *b])]
    )
    layers["changed"] = layers["candidate_first"] != layers["candidate_second"]
    layers.attrs["points"] = chosen
    return frontiers, layers
