"""How the CLI shows tables: rich tables for people, stable JSON shapes for programs.

JSON shapes (stable; documented in the README):
- ``mpq frontier RUN --json`` and ``mpq search --json``: ``{"run": id, "task": str, "target": str,
  "objectives": [..], "metric_name": str, "float_metric": float|null, "spearman": float|null,
  "points": [{"point", "label", "is_baseline", "optimal", "predicted_loss", "measured_metric",
  "costs": {column: value}, "assignment": {layer: candidate}}]}``.
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
        "points": [
            {
                "point": int(row["point"]), "label": row["label"], "is_baseline": bool(row["is_baseline"]),
                "optimal": bool(row["optimal"]), "predicted_loss": _plain(row["predicted_loss"]),
                "measured_metric": _plain(row["measured_metric"]),
                "costs": {c: _plain(row[c]) for c in costs},
                "assignment": run.assignment(int(row["point"])),
            }
            for _, row in run.frontier.iterrows()
        ],
    }


def table_json(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [{k: _plain(v) if not isinstance(v, (list, tuple)) else list(v) for k, v in row.items()} for row in table.to_dict("records")]


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


def frontier_view(run: Run) -> pd.DataFrame:
    """The frontier with the objectives first and a short per-point format summary."""
    frontier = run.frontier.copy()
    frontier["formats"] = [
        " ".join(f"{c}:{n}" for c, n in pd.Series(run.assignment(int(p))).value_counts().items())
        for p in frontier["point"]
    ]
    shown = ["point", "label", "predicted_loss", *run.objectives]
    return frontier[[*shown, "measured_metric", "formats"]].rename(columns={"measured_metric": run.record["metric_name"]})


def print_run(console: Console, run: Run) -> None:
    record = run.record
    console.print(rich_table(frontier_view(run), title=f"run {run.id}: {record['task_name']} on {run.target}"))
    summary = [f"status {run.status}"]
    if record["float_metric"] is not None:
        summary.append(f"float32 {record['metric_name']} {record['float_metric']:.4f}")
    if record["spearman"] is not None:
        summary.append(f"Spearman(predicted loss, measured drop) {record['spearman']:.3f}")
    if record.get("error"):
        summary.append(f"error: {record['error']}")
    console.print("; ".join(summary))
