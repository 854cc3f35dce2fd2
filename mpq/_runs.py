"""A stored search, read back: the frontier, the per-layer assignments and the pipeline tables."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from mpq._export import export
from mpq._frontier_columns import cost_columns
from mpq._liveness import shown_status
from mpq._measured_frontier import (
    absolute_drop,
    check_drop,
    configuration_keys,
    higher_is_better,
    metric_drop,
    unresolved,
)
from mpq._param_checks import Interval, check_param, unknown_name
from mpq._probes.settings import settings_from_json
from mpq._quantizer import LEGACY_QUANTIZER, QuantizerSettings, describe
from mpq._storage import DB, open_store
from mpq._trust import spec_to_rebuild
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
        record: Every stored field of the run (hashes, settings, budgets, versions, error...),
            ``evaluations``: the calls of ``task.evaluate`` the run spent (the float model's
            and one per distinct measured configuration), and ``quantizer``: the quantizer
            settings (:class:`mpq.QuantizerSettings` as a dict).
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

    @property
    def fused(self) -> list[list[str]]:
        """The task's fused sets (q/k/v, gate/up of a decoder): layers a serving engine runs as one
        matmul, whether the search tied them or not (``--no-fuse``); a run stored before they
        were recorded gives the sets it tied."""
        settings = self.record.get("settings", {})
        return [list(group) for group in settings.get("fused", settings.get("ties", ()))]

    @property
    def quantizer(self) -> QuantizerSettings:
        """The quantizer settings every point of the run was measured with (mpq's first
        quantizer, ``LEGACY_QUANTIZER``, for runs stored before the settings existed)."""
        probe = self.record.get("settings", {}).get("probe")
        return LEGACY_QUANTIZER if probe is None else settings_from_json(probe).quantizer

    @property
    def rank_note(self) -> str | None:
        """How well predicted loss ranked the measured configurations: Spearman's rho of predicted
        loss against the measured drop, or why none is given (every point measures the same, or
        the measured metric's spread is within what the held-out set resolves); None before
        validation, or with fewer than three validated points."""
        reason = unresolved(self.frontier["measured_metric"], self.record["metric_name"])
        if reason is not None:
            return reason
        if self.record.get("spearman") is not None:
            return f"Spearman(predicted loss, measured drop) {self.record['spearman']:.3f}"
        return None

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
                f"run {self.id} has no point {point!r}; choose one of {', '.join(map(str, sorted(self.frontier['point'])))}."
            )
        return dict(zip(rows["layer"], rows["candidate"]))

    def export(
        self,
        point: int,
        to: str = "json",
        out: str | Path | None = None,
        *,
        model: str | None = None,
        checkpoint: str | Path | None = None,
    ) -> dict[str, Any] | Path:
        """One point for another tool: a ``json``, ``hawq`` or ``compressed-tensors`` document, an
        ``onnx`` or ``qonnx`` model file written to ``out``, or a compressed-tensors ``checkpoint``
        folder, its model rebuilt from ``model`` (see :func:`mpq.export`)."""
        return export(self, point, to, out, model=model, checkpoint=checkpoint)

    def model_spec_allowed(self, allowed: Iterable[str] = ()) -> bool:
        """Whether rebuilding this run's model (an ONNX export) runs only code the caller allowed
        (:meth:`rebuild_spec` is not None). A store is data: the file it names is code.

        Args:
            allowed: ``--model`` specs the caller trusts (the dashboard's ``--allow-model``).
        """
        return self.rebuild_spec(allowed) is not None

    def rebuild_spec(self, allowed: Iterable[str] = ()) -> str | None:
        """The ``--model`` spec that rebuilds this run's model running only code the caller
        allowed, or None: its stored spec when it is a built-in example or one of ``allowed`` (a
        task file's path compared resolved); its file gone, one of ``allowed`` naming a file of
        the same name and factory (the folder moved; the rebuild checks the model and data).

        Args:
            allowed: ``--model`` specs the caller trusts (the dashboard's ``--allow-model``).
        """
        return spec_to_rebuild(self.record.get("model_spec"), allowed)

    @property
    def higher_is_better(self) -> bool:
        """Whether the run's metric improves upwards (an accuracy) or downwards (a perplexity)."""
        return higher_is_better(self.record)

    def best(self, max_drop: float | str | None = None, **budgets: float) -> pd.Series:
        """The best point within budgets, or the cheapest within an allowed drop.

        Without ``max_drop``, best means the best measured metric among the validated
        frontier points (the highest, or the lowest for a lower-is-better metric such as a
        perplexity; the lowest predicted loss when none was validated). With it, the cheapest
        configuration on the run's first objective whose measured metric is within ``max_drop``
        of the float model's (any validated point, baselines included; the better metric breaks
        a tie).

        Args:
            max_drop: The allowed drop below the float metric (a rise above it for a
                lower-is-better metric): metric units (``0.01``) or a percentage of it (``"1%"``).
            **budgets: Cost column -> upper limit, e.g. ``latency_s=1e-3, weight_bytes=2e5``.

        Returns:
            The frontier row of that point.

        Raises:
            UnknownNameError: a budget names no cost column of the run.
            InvalidParameterError: a bad ``max_drop``, a run never validated, or no point meets
                the budgets and the drop.
        """
        higher = higher_is_better(self.record)
        if max_drop is not None:
            check_drop(max_drop, "Run.best")
            if self.record["float_metric"] is None:
                raise InvalidParameterError(
                    f"run {self.id} was not validated, so no drop can be measured; search with validation on."
                )
            float_metric = self.record["float_metric"]
            allowed = absolute_drop(max_drop, float_metric, "Run.best")
            rows = self.frontier[metric_drop(float_metric, self.frontier["measured_metric"], higher) <= allowed]
        else:
            rows = self.frontier[~self.frontier["is_baseline"]]
        costs = cost_columns(self.frontier)
        for name, limit in budgets.items():
            if name not in costs:
                raise unknown_name("budget", name, costs)
            check_param("Run.best", name, limit, Interval(float, 0, None))
            rows = rows[rows[name] <= limit]
        if rows.empty:
            limits = [f"{k}<={v:g}" for k, v in budgets.items()]
            limits += [f"a drop of at most {max_drop}"] if max_drop is not None else []
            raise InvalidParameterError(
                f"run {self.id}: no frontier point meets {', '.join(limits)}; relax a budget or the drop, or run "
                "'mpq search --budget' or 'mpq search --max-drop' for that point."
            )
        if max_drop is not None:
            return rows.sort_values([self.objectives[0], "measured_metric"], ascending=[True, not higher]).iloc[0]
        validated = rows[rows["measured_metric"].notna()]
        return (
            validated.loc[validated["measured_metric"].idxmax() if higher else validated["measured_metric"].idxmin()]
            if len(validated)
            else rows.loc[rows["predicted_loss"].idxmin()]
        )


def _evaluations(record: dict[str, Any], frontier: pd.DataFrame, assignments: pd.DataFrame) -> int:
    """Calls of ``task.evaluate`` the run spent: the float model, and each distinct measured
    configuration once (a search never measures one configuration twice)."""
    if frontier.empty:
        return int(record["float_metric"] is not None)
    measured = set(frontier.loc[frontier["measured_metric"].notna(), "point"])
    configurations = {key for point, key in configuration_keys(assignments).items() if point in measured}
    return len(configurations) + (record["float_metric"] is not None)


def _once(frontier: pd.DataFrame, assignments: pd.DataFrame) -> pd.DataFrame:
    """The frontier with each configuration listed once: a uniform baseline that a strategy also
    measured as a frontier point is that point's row, its label saying so (the baseline's point
    number still exports it)."""
    if frontier.empty:
        return frontier
    key = configuration_keys(assignments)
    baseline = dict(zip(frontier["point"], frontier["is_baseline"]))
    label = dict(zip(frontier["point"], frontier["label"]))
    baseline_of = {key[p]: p for p in frontier["point"] if baseline[p] and p in key}
    twins = {}  # frontier point -> the baseline point of the same configuration
    for point in frontier["point"]:
        twin = baseline_of.get(key.get(point))
        if not baseline[point] and twin is not None and twin not in twins.values():
            twins[point] = twin
    if not twins:
        return frontier
    frontier = frontier[~frontier["point"].isin(twins.values())].copy()
    frontier["label"] = [f"{label[p]}, also {label[twins[p]]}" if p in twins else label[p] for p in frontier["point"]]
    return frontier


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
    store = open_store(db, "read")
    record = store.run_record(run_id)
    frontier, assignments = store.run_points(run_id)
    record["evaluations"] = _evaluations(record, frontier, assignments)
    probe = record.get("settings", {}).get("probe")
    record["quantizer"] = describe(LEGACY_QUANTIZER if probe is None else settings_from_json(probe).quantizer)
    frontier = _once(frontier, assignments)
    if len(frontier):  # points are numbered as measured; a person reads them by cost
        order = [record["objectives"][0], "predicted_loss", "point"]
        frontier = pd.concat([frontier[~frontier["is_baseline"]].sort_values(order), frontier[frontier["is_baseline"]]])
        frontier = frontier.reset_index(drop=True)
    return Run(
        id=int(run_id),
        db=store.url,
        status=shown_status(store.url, record),
        record=record,
        frontier=frontier,
        assignments=assignments,
        tables=store.run_tables(run_id),
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
    store = open_store(db, "read")
    runs = store.list_runs()
    runs["status"] = [
        shown_status(store.url, {"id": run, "status": status, "owner": owner})
        for run, status, owner in zip(runs["run"], runs["status"], runs["owner"])
    ]
    return runs
