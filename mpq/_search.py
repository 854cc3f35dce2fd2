"""``mpq.search``: probe -> cost -> solve -> validate -> store. Orchestration only."""

from __future__ import annotations

import logging
import platform
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import hwmodels
import numpy as np
import pandas as pd
import solvers
from scipy.stats import spearmanr

from mpq._apply import activation_ranges, apply
from mpq._formats import candidate_table
from mpq._layers import layers
from mpq._omega import omega
from mpq._probes import PROBES, ProbeSettings, probe
from mpq._probes.checkpoint import data_hash, model_hash, probe_key
from mpq._probes.settings import check_settings, settings_to_json
from mpq._runs import Run, open_run
from mpq._storage import Store
from mpq._task import Task
from mpq._validation import Interval, check_param, unknown_name
from mpq.exceptions import InvalidParameterError

logger = logging.getLogger("mpq.search")

#: The target and objective of a bare ``mpq search``: the digits CNN is the kind of network
#: FINN's streaming dataflow puts on a Zynq board, and the FPGA runs 2- to 8-bit candidates.
DEFAULT_TARGET = "zcu104"
DEFAULT_OBJECTIVES = ("latency_s",)

#: ``progress(stage, done, total, message)``; stages: layers, costs, probe, omega, solve,
#: validate, store.
Progress = Callable[[str, int, int, str], None]

_VERSIONED_PACKAGES = ("mpq", "torch", "numpy", "pandas", "pulp", "highspy", "optuna", "sqlalchemy")


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def _silent(stage: str, done: int, total: int, message: str) -> None:
    logger.debug("%s %d/%d %s", stage, done, total, message)


def _check_search_params(task, objectives, budgets, batch_size, max_points) -> tuple[tuple[str, ...], dict[str, float]]:
    if not isinstance(task, Task):
        raise InvalidParameterError(f"The 'task' parameter of search must be an mpq.Task. Got {type(task).__name__} instead.")
    if isinstance(objectives, str):
        objectives = (objectives,)
    objectives = tuple(o for o in objectives if o != "predicted_loss")
    if not 1 <= len(objectives) <= 2:
        raise InvalidParameterError(
            f"The 'objectives' parameter of search must name one or two cost columns (beside the predicted loss). "
            f"Got {list(objectives)!r} instead."
        )
    budgets = dict(budgets or {})
    for name, limit in budgets.items():
        check_param("search", f"budgets[{name!r}]", limit, Interval(float, 0, None, closed="neither"))
    check_param("search", "batch_size", batch_size, Interval(int, 1, None))
    check_param("search", "max_points", max_points, Interval(int, 2, None))
    return objectives, {k: float(v) for k, v in budgets.items()}


def _check_cost_names(costs: pd.DataFrame, names: Sequence[str], what: str) -> None:
    columns = [c for c in costs.columns if c not in ("layer", "candidate") and pd.api.types.is_numeric_dtype(costs[c])]
    for name in names:
        if name not in columns:
            raise unknown_name(what, name, columns)


def thin(points: list[solvers.Solution], objective: str, max_points: int) -> list[solvers.Solution]:
    """At most ``max_points`` of a frontier sorted by ``objective``: both ends and evenly spaced ones between."""
    if len(points) <= max_points:
        return points
    keep = np.unique(np.round(np.linspace(0, len(points) - 1, max_points)).astype(int))
    return [points[i] for i in keep]


def _baselines(om: pd.DataFrame, costs: pd.DataFrame, candidates: Sequence[str], budgets: Mapping[str, float]) -> dict[str, solvers.Solution]:
    """The uniform configurations (every layer at one candidate) the target runs for every layer."""
    layer_names = list(dict.fromkeys(om["layer"]))
    found = {}
    for candidate in candidates:
        runs_everywhere = costs.loc[costs["candidate"] == candidate, "layer"].nunique() == len(layer_names)
        if runs_everywhere:
            found[f"all-{candidate}"] = solvers.solve(om, costs, budgets={}, fixed=dict.fromkeys(layer_names, candidate))
    return found


def search(
    task: Task,
    *,
    target: str = DEFAULT_TARGET,
    objectives: Sequence[str] | str = DEFAULT_OBJECTIVES,
    budgets: Mapping[str, float] | None = None,
    candidates: Sequence[str] | None = None,
    settings: ProbeSettings | None = None,
    batch_size: int = 1,
    measured: str | Path | pd.DataFrame | None = None,
    max_points: int = 20,
    validate: bool = True,
    db: str | Path | None = None,
    progress: Progress | None = None,
) -> Run:
    """Find the per-layer formats of ``task``'s model on the Pareto frontier for ``target``.

    Probes the model's sensitivity (reused from the store when the same model, data and probe
    settings were probed before), costs every layer at every candidate on the target, solves
    for the frontier of predicted loss against the objectives (or, with ``budgets``, the one
    optimal point), validates every point and the uniform baselines by fake-quantizing the
    model and evaluating it on the task's held-out data, and stores it all.

    Args:
        task: The model, calibration data, loss and metric.
        target: A device name (``hwmodels.list_devices()``) or a device TOML path.
        objectives: One or two cost columns to trade against the predicted loss (``latency_s``,
            ``energy_j``, ``weight_bytes``, ``bops`` or a target column such as ``flash_bytes``).
            Two give an approximate three-objective frontier.
        budgets: Cost column -> upper limit. Given, the search returns the one optimal point
            within them; the device's own capacities (flash, SRAM, LUTs...) always apply.
        candidates: Candidate names to choose from; default: every candidate the target runs.
        settings: Probe settings; default ``ProbeSettings()`` (Hessian traces of weights and
            activations).
        batch_size: Batch size the cost model assumes.
        measured: A measured latency table (``mpq.measure_latency`` / ``mpq measure --out``: a
            CSV path or DataFrame with layer, candidate, latency_s at the same batch size) that
            replaces the model's latency for the pairs it covers.
        max_points: The frontier is thinned to at most this many points (evenly spread along
            the first objective) before validation.
        validate: Evaluate every point on held-out data (needs ``task.evaluate``).
        db: The store: None (``~/.cache/mpq/mpq.db``), a SQLite path or a SQLAlchemy URL.
        progress: ``progress(stage, done, total, message)`` callback.

    Returns:
        The stored run (``run.frontier``, ``run.best(...)``).

    Raises:
        UnknownNameError: an unknown target, candidate, objective or budget name.
        InvalidParameterError: a bad parameter value.
        InfeasibleBudgetError: no configuration meets the budgets (raised before any probe runs,
            with the smallest achievable value).
        StoreError: the store cannot be opened or written.
    """
    objectives, budgets = _check_search_params(task, objectives, budgets, batch_size, max_points)
    settings = check_settings("search", settings or ProbeSettings())
    progress = progress or _silent

    # Everything a user can get wrong is checked before the first probe sample.
    device = hwmodels.load_device(target)
    candidate_names = list(candidates or device.candidates)
    candidates_table = candidate_table(candidate_names)
    progress("layers", 0, 1, "running the model once")
    layer_table = layers(task.model, task.calibration[0][0])
    progress("costs", 0, 1, f"costing {len(layer_table)} layers x {len(candidate_names)} candidates on {device.name}")
    costs = hwmodels.cost_table(layer_table, device, candidates_table, batch_size=batch_size, measured=measured)
    _check_cost_names(costs, objectives, "objective")
    _check_cost_names(costs, list(budgets), "budget")
    all_budgets = {**device.limits(), **budgets}
    zero = costs[["layer", "candidate"]].assign(omega=0.0)
    solvers.solve(zero, costs, all_budgets)  # InfeasibleBudgetError here, before any probe runs
    if validate and task.evaluate is None:
        raise InvalidParameterError(
            f"task {task.name!r} has no evaluate function, so its points cannot be validated; "
            "give Task(evaluate=...) or pass validate=False (--no-validate)."
        )

    store = db if isinstance(db, Store) else Store(db)
    key = probe_key(task, settings)
    run_id = store.create_run(
        task_name=task.name, metric_name=task.metric_name, model_hash=model_hash(task.model),
        data_hash=data_hash(task.calibration), probe_key=key, target=device.name, objectives=list(objectives),
        budgets=budgets, settings={"probe": settings_to_json(settings), "candidates": candidate_names,
                                    "batch_size": batch_size, "max_points": max_points},
        versions=_versions(),
    )
    try:
        _run_pipeline(task, store, run_id, key, settings, device, candidate_names, layer_table, costs,
                      objectives, budgets, all_budgets, max_points, validate, progress)
    except BaseException as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        store.finish_run(run_id, "failed", error=f"{type(exc).__name__}: {message}")
        raise
    return open_run(store, run_id)


def _run_pipeline(task, store, run_id, key, settings, device, candidate_names, layer_table, costs,
                  objectives, budgets, all_budgets, max_points, validate, progress) -> None:
    sensitivity = store.find_probe(key)
    if sensitivity is None:
        sensitivity = probe(task, settings=settings, checkpoint=store,
                            progress=lambda done, total, message: progress("probe", done, total, message))
        store.save_probe(key, model_hash=model_hash(task.model), data_hash=data_hash(task.calibration),
                         settings={"json": settings_to_json(settings)}, table=sensitivity)
    else:
        progress("probe", 1, 1, "reused the stored probe of this model, data and settings")
    store.save_table(run_id, "layers", layer_table)
    store.save_table(run_id, "sensitivity", sensitivity)
    store.save_table(run_id, "costs", costs)

    progress("omega", 0, 1, "quantization noise of every layer at every candidate")
    om = omega(task, sensitivity, candidate_names, probe=PROBES[settings.probes[0]][0])
    store.save_table(run_id, "omega", om)

    progress("solve", 0, 1, f"{'optimal point' if budgets else 'frontier'} over {len(om)} (layer, candidate) pairs")
    if budgets:
        points = [solvers.solve(om, costs, all_budgets)]
    else:
        points = thin(solvers.frontier(om, costs, list(objectives), budgets=all_budgets), objectives[0], max_points)
    labelled = [("frontier", False, p) for p in points]
    labelled += [(label, True, p) for label, p in _baselines(om, costs, candidate_names, {}).items()]

    float_metric = measured = None
    if validate:
        ranges = activation_ranges(task.model, task.calibration)
        float_metric = float(task.evaluate(task.model))
        measured = []
        for i, (label, _, solution) in enumerate(labelled):
            progress("validate", i, len(labelled), label)
            measured.append(float(task.evaluate(apply(task.model, solution.assignment, act_ranges=ranges))))
        progress("validate", len(labelled), len(labelled), "done")
    rows = [
        {
            "point": i, "label": label, "is_baseline": is_baseline, "optimal": solution.optimal,
            "predicted_loss": solution.predicted_loss, "costs": solution.costs,
            "measured_metric": None if measured is None else measured[i], "assignment": solution.assignment,
        }
        for i, (label, is_baseline, solution) in enumerate(labelled)
    ]
    progress("store", 0, 1, "writing the frontier")
    store.save_points(run_id, rows)
    spearman = None
    if measured is not None and len(rows) > 2:
        drop = [float_metric - m for m in measured]
        rho = spearmanr([r["predicted_loss"] for r in rows], drop).statistic
        spearman = None if np.isnan(rho) else float(rho)
    store.finish_run(run_id, "done", float_metric=float_metric, spearman=spearman)
