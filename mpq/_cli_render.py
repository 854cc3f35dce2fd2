"""How the CLI shows tables: rich tables for people, stable JSON shapes for programs.

JSON shapes (stable; documented in the README):
- ``mpq frontier RUN --json`` and ``mpq search --json``: ``{"run": id, "task": str, "target": str,
  "objectives": [..], "metric_name": str, "float_metric": float|null, "spearman": float|null,
  "evaluations": int, "max_drop": float|str|null, "best_within_drop": point|null,
  "points": [{"point", "label", "is_baseline", "optimal", "predicted_loss", "measured_metric",
  "dominated": bool|null, "costs": {column: value}, "assignment": {layer: candidate}}]}``.
- ``mpq runs --json``: a list of ``{"run", "status", "task", "target", "objectives", "points",
  "metric_name", "float_metric", "spearman", "created_at", "finished_at"}``.
- ``mpq devices --json``: a list of ``{"name", "kind", "description", "candidates"}``.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from mpq._frontier_columns import cost_columns
from mpq._runs import Run


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if isinstance(value, pd.Timestamp) or hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def run_json(run: Run) -> dict[str, Any]:
    costs = cost_columns(run.frontier)
    return {
        "run": run.id,
        "task": run.record["task_name"],
        "target": run.target,
        "objectives": run.objectives,
        "metric_name": run.record["metric_name"],
        "float_metric": _plain(run.record["float_metric"]),
        "spearman": _plain(run.record["spearman"]),
        "evaluations": run.record["evaluations"],
        "max_drop": run.record["settings"].get("max_drop"),
        "best_within_drop": _best_within_drop(run),
        "points": [
            {
                "point": int(row["point"]),
                "label": row["label"],
                "is_baseline": bool(row["is_baseline"]),
                "optimal": bool(row["optimal"]),
                "predicted_loss": _plain(row["predicted_loss"]),
                "measured_metric": _plain(row["measured_metric"]),
                "dominated": None if pd.isna(row["dominated"]) else bool(row["dominated"]),
                "costs": {c: _plain(row[c]) for c in costs},
                "assignment": run.assignment(int(row["point"])),
            }
            for _, row in run.frontier.iterrows()
        ],
    }


def table_json(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: _plain(v) if not isinstance(v, (list, tuple)) else list(v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=_plain)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value))
    return str(value)


def rich_table(table: pd.DataFrame, title: str | None = None) -> Table:
    """Any DataFrame as a rich table, numbers right-aligned with 4 significant digits."""
    out = Table(title=title, title_justify="left")
    for column in table.columns:
        numeric = pd.api.types.is_numeric_dtype(table[column]) and not pd.api.types.is_bool_dtype(table[column])
        out.add_column(str(column), justify="right" if numeric else "left")
    for row in table.itertuples(index=False):
        out.add_row(*(_fmt(v) for v in row))
    return out


def _best_within_drop(run: Run) -> int | None:
    max_drop = run.record["settings"].get("max_drop")
    if max_drop is None or run.record["float_metric"] is None:
        return None
    try:
        return int(run.best(max_drop=max_drop)["point"])
    except ValueError:  # nothing measured within it yet (an unfinished run)
        return None


def shown_points(run: Run, all_points: bool = False) -> pd.DataFrame:
    """The points a person is shown: the measured frontier (validated points no other validated
    point beats), or with ``all_points`` every validated point; every point of a run not validated."""
    frontier = run.frontier
    validated = frontier[frontier["measured_metric"].notna()]
    if validated.empty:
        return frontier
    rows = validated if all_points else validated[validated["dominated"].fillna(False).astype(bool) == False]  # noqa: E712
    return rows.sort_values([run.objectives[0], "measured_metric"], ascending=[True, False])


def frontier_view(run: Run, all_points: bool = False) -> pd.DataFrame:
    """The shown points with the objectives first and a short per-point format summary."""
    frontier = shown_points(run, all_points).copy()
    frontier["formats"] = [
        " ".join(f"{c}:{n}" for c, n in pd.Series(run.assignment(int(p))).value_counts().items())
        for p in frontier["point"]
    ]
    shown = ["point", "label", "predicted_loss", *run.objectives, "measured_metric"]
    if all_points and frontier["measured_metric"].notna().any():
        frontier["beaten"] = ["yes" if flag is True else "" for flag in frontier["dominated"].astype(object)]
        shown.append("beaten")
    return frontier[[*shown, "formats"]].rename(columns={"measured_metric": run.record["metric_name"]})


def _rank_note(run: Run) -> str | None:
    """Spearman's rho, or why none is given: the measured metric's spread is within a few steps of
    the smallest difference the held-out set shows (1/N for an accuracy over N samples)."""
    record, measured = run.record, run.frontier["measured_metric"].dropna()
    levels = sorted(set(measured.round(12)))
    if len(levels) >= 2:
        step = min(b - a for a, b in zip(levels, levels[1:]))
        spread = levels[-1] - levels[0]
        if spread <= 3 * step:
            return (
                f"no rank correlation: the measured {record['metric_name']} spans {spread:.4g}, within 3 steps "
                f"of the {step:.4g} the held-out set resolves"
            )
    if record["spearman"] is not None:
        return f"Spearman(predicted loss, measured drop) {record['spearman']:.3f}"
    return None


def print_run(console: Console, run: Run, all_points: bool = False) -> None:
    record = run.record
    view = frontier_view(run, all_points)
    console.print(rich_table(view, title=f"run {run.id}: {record['task_name']} on {run.target}"))
    summary = [f"status {run.status}"]
    if record["float_metric"] is not None:
        summary.append(f"float32 {record['metric_name']} {record['float_metric']:.4f}")
        summary.append(f"{record['evaluations']} evaluations")
        hidden = int(run.frontier["measured_metric"].notna().sum()) - len(view)
        if hidden > 0:
            summary.append(f"{hidden} validated points beaten on measurement hidden (--all shows them)")
    best = _best_within_drop(run)
    if best is not None:
        summary.append(f"cheapest within a drop of {record['settings']['max_drop']}: point {best}")
    note = _rank_note(run)
    if note:
        summary.append(note)
    if record.get("error"):
        summary.append(f"error: {record['error']}")
    console.print("; ".join(summary))
