"""What the store keeps, as plain documents: tables as JSON text, NaN as null, a run's points as
the frames ``run_points`` returns. Shared by every store (:mod:`mpq._storage`)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from mpq._storage.base import RUN_STATUSES
from mpq.exceptions import InvalidParameterError


def finite(value: Any) -> Any:
    """NaN is not JSON (PostgreSQL rejects it): store it as null."""
    return None if isinstance(value, float) and math.isnan(value) else value


def table_to_json(table: pd.DataFrame) -> str:
    """A table and its ``attrs`` (the cost model's max_columns, cost_columns...) as one JSON text.

    Floats are written as Python's ``json`` writes them (the shortest text that reads back to the
    same double): a resumed run reads back exactly the numbers it stored, so it solves to the very
    frontier of an uninterrupted run (pandas' ``to_json`` keeps 15 digits).
    """
    split = table.to_dict(orient="split", index=False)
    rows = [[_plain(value) for value in row] for row in split["data"]]
    return json.dumps({"attrs": table.attrs, "table": {"columns": split["columns"], "data": rows}}, default=str)


def _plain(value: Any) -> Any:
    """A cell as JSON has it: numpy scalars as Python's, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    return finite(value)


def table_from_json(text: str) -> pd.DataFrame:
    document = json.loads(text)
    table = pd.DataFrame(document["table"]["data"], columns=document["table"]["columns"])
    for column in table.columns:  # JSON has no tuples: shapes come back as lists
        if len(table) and isinstance(table[column].iloc[0], list):
            table[column] = table[column].map(tuple)
    table.attrs.update(document["attrs"])
    return table


def check_status(status: Any, method: str) -> None:
    if status not in RUN_STATUSES:
        raise InvalidParameterError(
            f"The 'status' parameter of Store.{method} must be one of {', '.join(RUN_STATUSES)}. Got {status!r} instead."
        )


def point_frames(points: Iterable[Mapping[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``run_points``' two frames from a run's points, ordered by point: each has ``point``,
    ``label``, ``is_baseline``, ``optimal``, ``predicted_loss``, ``costs`` (name -> value or
    None), ``measured_metric`` and ``dominated`` (None where null) and ``assignment``
    ((layer, candidate) pairs in layer order)."""
    frontier, assignments = [], []
    for p in points:
        frontier.append(
            {
                "point": p["point"],
                "label": p["label"],
                "is_baseline": p["is_baseline"],
                "optimal": p["optimal"],
                "predicted_loss": p["predicted_loss"],
                **{k: (math.nan if v is None else v) for k, v in p["costs"].items()},
                "measured_metric": math.nan if p["measured_metric"] is None else p["measured_metric"],
                "dominated": p["dominated"],
            }
        )
        assignments.extend({"point": p["point"], "layer": layer, "candidate": c} for layer, c in p["assignment"])
    frontier = pd.DataFrame(frontier)
    if not frontier.empty:  # True, False, or NA until validated
        frontier["dominated"] = frontier["dominated"].astype("boolean")
    return frontier, pd.DataFrame(assignments, columns=["point", "layer", "candidate"])
