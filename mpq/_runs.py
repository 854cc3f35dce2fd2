"""A stored search, read back: the frontier, the per-layer assignments and the pipeline tables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mpq._export import export
from mpq._frontier_columns import cost_columns
from mpq._owners import shown_status
from mpq._storage import DB, BaseStore, Store
from mpq._validation import check_param, Interval, unknown_name
from mpq.exceptions import InvalidParameterError

@dataclass(frozen=True)
class Run:
    """A search as stored: what went in, the frontier that came out, and how it was validated.

    Attributes:
        id: The run id in its store.
        db: The store's SQLAlchemy URL.
        status: ``running``, ``done``, ``failed``, or ``stopped``: marked running, but the process
            that ran it on this host has ended (``kill -9``, a crash); ``mpq search --resume``
            (or the same search again) finishes a failed or stopped run.
        record: Every stored field of the run (hashes, settings, budgets, versions, error...).
        frontier: One row per point; columns: see :data:`mpq._frontier_columns.FRONTIER_COLUMNS_DOC`.
        assignments: One row per (point, layer): ``point``, ``layer``, ``candidate``.
        tables: The pipeline tables by name (``layers``, ``sensitivity``, ``omega``, ``costs``).
    """

    id: int
    db: str
    status: str
    record: dict[str, Any] = field(repr=False)
    frontier: pd.DataFrame = field(repr=False)
    assignments: pd.DataFrame = field(repr=False)
    tables: dict[str, pd.DataFrame] = field(repr=False)

    @property
    def target(self) -> str:
        return self.record["target"]

    @property
    def objectives(self) -> list[str]:
        return list(self.record["objectives"])

    @property
    def created_at(self) -> datetime:
        return self.record["created_at"]

    def assignment(self, point: int) -> dict[str, str]:
        """Layer -> candidate of one point.

        Args:
            point: A value of the frontier's ``point`` column.

        Raises:
            InvalidParameterError: no such point in this run.
        """
        rows = self.assignments[self.assignments["point"] == point]
        if rows.empty:
            raise InvalidParameterError(
                f"run {self.id} has no point {point!r}; choose one of {', '.join(map(str, self.frontier['point']))}."
            )
        return dict(zip(rows["layer"], rows["candidate"]))

    def export(self, point: int, to: str = "json") -> dict[str, Any]:
        """One point as a document for another tool: ``json``, ``hawq`` or ``hf`` (see :func:`mpq.export`)."""
        return export(self, point, to)

    def best(self, **budgets: float) -> pd.Series:
        """The best frontier point within budgets.

        Best means the highest measured metric when the run was validated, else the lowest
        predicted loss.

        Args:
            **budgets: Cost column -> upper limit, e.g. ``latency_s=1e-3, weight_bytes=2e5``.

        Returns:
            The frontier row of that point.

        Raises:
            UnknownNameError: a budget names no cost column of the run.
            InvalidParameterError: no point meets the budgets.
        """
        rows = self.frontier[~self.frontier["is_baseline"]]
        costs = cost_columns(self.frontier)
        for name, limit in budgets.items():
            if name not in costs:
                raise unknown_name("budget", name, costs)
            check_param("Run.best", name, limit, Interval(float, 0, None))
            rows = rows[rows[name] <= limit]
        if rows.empty:
            limits = ", ".join(f"{k}<={v:g}" for k, v in budgets.items())
            raise InvalidParameterError(
                f"run {self.id}: no frontier point meets {limits}; relax a budget or run 'mpq search --budget' for that point."
            )
        validated = rows["measured_metric"].notna().all()
        return rows.loc[rows["measured_metric"].idxmax()] if validated else rows.loc[rows["predicted_loss"].idxmin()]


def open_run(db: str | Path | None, run_id: int) -> Run:
    """Read one run from a store.

    Args:
        db: The store (None for the default, a SQLite path, or a SQLAlchemy URL).
        run_id: The run's id (``mpq runs`` lists them).

    Returns:
        The run.

    Raises:
        InvalidParameterError: ``db`` is not a path, URL or None, or ``run_id`` not an int >= 1.
        RunNotFoundError: the store has no such run.
        StoreError: the store cannot be read.
    """
    check_param("open_run", "db", db, DB)
    check_param("open_run", "run_id", run_id, Interval(int, 1, None, closed="left"))
    store = db if isinstance(db, BaseStore) else Store(db, mode="read")
    record = store.run_record(run_id)
    frontier, assignments = store.run_points(run_id)
    return Run(
        id=int(run_id), db=store.url, status=shown_status(store.url, record), record=record,
        frontier=frontier, assignments=assignments, tables=store.run_tables(run_id),
    )


def list_runs(db: str | Path | None = None) -> pd.DataFrame:
    """Every run in a store, oldest first.

    Args:
        db: The store (None for the default, a SQLite path, or a SQLAlchemy URL).

    Returns:
        One row per run: ``run`` (id), ``status`` (as :attr:`Run.status`), ``task``, ``target``,
        ``objectives`` (comma-separated), ``points`` (count), ``metric_name``, ``float_metric``
        (the float32 model's metric), ``spearman`` (rank correlation of predicted loss with the
        measured metric drop), ``created_at``, ``finished_at`` (UTC), ``owner`` (``host:pid`` of
        the process that last ran it; None before schema 0003).
    """
    check_param("list_runs", "db", db, DB)
    store = db if isinstance(db, BaseStore) else Store(db, mode="read")
    runs = store.list_runs()
    runs["status"] = [
        shown_status(store.url, {"id": run, "status": status, "owner": owner})
        for run, status, owner in zip(runs["run"], runs["status"], runs["owner"])
    ]
    return runs
