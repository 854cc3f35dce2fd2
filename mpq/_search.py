"""``mpq.search``: probe -> cost -> solve -> validate -> store. Orchestration only.

A search is checked and planned once (:class:`_Plan`: the device, the layer table, the
candidates and the cost table), then runs its stages inside the store's run lifecycle
(:meth:`Store.running`: the run's owner, Ctrl-C and failures recorded with how to resume). Each
stage keeps what it stored, so a resumed run does only what is missing.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import platform
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import spearmanr

import hwmodels
import solvers
from mpq._apply import calibrate
from mpq._defaults import DEFAULT_OBJECTIVES, DEFAULT_TARGET
from mpq._fingerprint import check_same_code, task_code
from mpq._formats import candidate_table, get_candidate
from mpq._layers import layers
from mpq._measured_frontier import (
    DEFAULT_DROP_EVALS,
    DropSearch,
    absolute_drop,
    check_drop,
    configuration_key,
    dominated,
    spread,
    unresolved,
)
from mpq._omega import omega
from mpq._owners import current_owner, owner_alive
from mpq._probes import PROBES, ProbeSettings, check_loss, probe
from mpq._probes.checkpoint import data_hash, model_hash, probe_key
from mpq._probes.settings import check_settings, for_device, settings_from_json, settings_to_json, with_quantizer
from mpq._quantizer import Calibration
from mpq._runs import Run, open_run
from mpq._scale import EXECUTOR, Handle, Runner, check_device, describe_executor, placed
from mpq._storage import DB, Store, table_to_json
from mpq._task import Task, model_device, run_model
from mpq._timeout import check_limit, evaluation_limit
from mpq._validate import evaluate, evaluate_configuration
from mpq._validation import InstanceOf, Interval, OneOf, check_param, unknown_name
from mpq.exceptions import DropNotMetError, InvalidParameterError, TaskSpecError
from mpqvocab import choices_hint, parameter_message

logger = logging.getLogger("mpq.search")

#: ``progress(stage, done, total, message)``; stages: layers, costs, resume (an unfinished run
#: of the same search taken up), probe, omega, solve, validate, store.
Progress = Callable[[str, int, int, str], None]

_VERSIONED_PACKAGES = ("mpq", "torch", "numpy", "pandas", "pulp", "highspy", "optuna", "sqlalchemy")

#: Record fields that make two searches the same search (with the cost table, compared apart).
_SAME_SEARCH = (
    "task_name",
    "metric_name",
    "model_hash",
    "data_hash",
    "probe_key",
    "target",
    "objectives",
    "budgets",
    "settings",
)
#: Settings of how a run ran, not of what it searches: a run resumes on another device or executor.
_EXECUTION = ("device", "executor")


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


@dataclass(frozen=True)
class _Plan:
    """What a run searches for, checked and built once before the first probe sample."""

    target: str
    device: hwmodels.Device
    objectives: tuple[str, ...]
    budgets: dict[str, float]
    candidates: tuple[str, ...]
    settings: ProbeSettings
    batch_size: int
    max_points: int
    validate: bool
    max_drop: float | str | None
    max_evals: int | None
    refine: int
    layer_table: pd.DataFrame
    costs: pd.DataFrame

    @property
    def all_budgets(self) -> dict[str, float]:
        """The user's budgets and the device's own capacities (flash, SRAM, LUTs...)."""
        return {**self.device.limits(), **self.budgets}

    def record_fields(self, task: Task) -> dict:
        """The run's stored fields: what makes it this search, and the versions that ran it."""
        return dict(
            task_name=task.name,
            model_spec=task.spec,
            metric_name=task.metric_name,
            model_hash=model_hash(task.model),
            data_hash=data_hash(task.calibration),
            probe_key=probe_key(task, self.settings),
            target=self.device.name,
            objectives=list(self.objectives),
            budgets=self.budgets,
            versions=_versions(),
            settings={
                "probe": settings_to_json(self.settings),
                "candidates": list(self.candidates),
                "target": self.target,
                "batch_size": self.batch_size,
                "max_points": self.max_points,
                "validate": self.validate,
                "max_drop": self.max_drop,
                "max_evals": self.max_evals,
                "refine": self.refine,
                "task_code": task_code(task),  # another loss or metric is another search
            },
        )

    @classmethod
    def new(
        cls,
        task: Task,
        *,
        target: str,
        objectives: Sequence[str] | str,
        budgets: Mapping[str, float] | None,
        candidates: Sequence[str] | None,
        settings: ProbeSettings | None,
        batch_size: int,
        measured: str | Path | pd.DataFrame | None,
        max_points: int,
        validate: bool,
        max_drop: float | str | None,
        max_evals: int | None,
        refine: int,
        progress: Progress,
    ) -> _Plan:
        """Check every argument a user can get wrong, trace the model once and cost it."""
        if isinstance(objectives, str):
            objectives = (objectives,)
        if not isinstance(objectives, Iterable) or not all(isinstance(o, str) for o in objectives):
            raise InvalidParameterError(
                parameter_message("search", "objectives", "a cost column name or a list of them", objectives)
            )
        objectives = tuple(o for o in objectives if o != "predicted_loss")
        if not 1 <= len(objectives) <= 2:
            raise InvalidParameterError(
                "The 'objectives' parameter of search must name one or two cost columns (beside the predicted loss). "
                f"Got {list(objectives)!r} instead."
            )
        check_param(
            "search", "budgets", budgets, InstanceOf((Mapping,), "a mapping of cost column to limit", optional=True)
        )
        if candidates is not None and (isinstance(candidates, str) or not isinstance(candidates, Iterable)):
            raise InvalidParameterError(
                parameter_message("search", "candidates", "a list of candidate names", candidates)
            )
        budgets = dict(budgets or {})
        for name, limit in budgets.items():
            check_param("search", f"budgets[{name!r}]", limit, Interval(float, 0, None, closed="neither"))
        check_param("search", "batch_size", batch_size, Interval(int, 1, None))
        check_param("search", "max_points", max_points, Interval(int, 2, None))
        check_param("search", "validate", validate, OneOf((True, False)))
        if max_drop is not None:
            check_drop(max_drop)
        if max_evals is not None:
            check_param("search", "max_evals", max_evals, Interval(int, 2, None))
        check_param("search", "refine", refine, Interval(int, 0, None))
        measures = [flag for flag, given in (("max_drop", max_drop is not None), ("refine", refine > 0)) if given]
        if measures and not validate:
            raise InvalidParameterError(
                f"{' and '.join(measures)} need measured evaluations, and validate=False (--no-validate) turns them "
                "off; drop one of the two."
            )
        if validate and task.evaluate is None:
            what = " and ".join(measures) + " need" if measures else "its points need"
            raise InvalidParameterError(
                f"task {task.name!r} has no evaluate function, and {what} measured evaluations; "
                "give Task(evaluate=...)" + ("." if measures else " or pass validate=False (--no-validate).")
            )
        device = hwmodels.load_device(target)
        named = tuple(candidates or ())
        candidates = named or tuple(device.candidates)
        candidates_table = candidate_table(candidates)
        # The default is the device's own list; a candidate the user names is searched or refused,
        # never dropped by the cost table without a word.
        unrun = next((name for name in named if name not in device.candidates), None)
        if unrun is not None:
            raise InvalidParameterError(
                f"candidate {unrun!r} does not run on {device.name}; choose among the candidates it runs: "
                f"{choices_hint(unrun, device.candidates)}, or add it to the candidates of a copy of "
                f"{device.path.name} and target that file."
            )
        settings = check_settings("search", _measured_candidates(settings or ProbeSettings(), candidates))
        settings = for_device(settings, device.activation_grid)
        progress("layers", 0, 1, "running the model once")
        layer_table = layers(task.model, task.calibration[0][0])
        _check_loss(task, layer_table, settings)
        progress("costs", 0, 1, f"costing {len(layer_table)} layers x {len(candidates)} candidates on {device.name}")
        costs = hwmodels.cost_table(layer_table, device, candidates_table, batch_size=batch_size, measured=measured)
        _check_cost_names(costs, objectives, "objective")
        _check_cost_names(costs, list(budgets), "budget")
        plan = cls(
            str(target),
            device,
            objectives,
            {k: float(v) for k, v in budgets.items()},
            candidates,
            settings,
            batch_size,
            max_points,
            validate,
            max_drop,
            max_evals,
            refine,
            layer_table,
            costs,
        )
        zero = costs[["layer", "candidate"]].assign(omega=0.0)
        solvers.solve(zero, costs, plan.all_budgets)  # InfeasibleBudgetError here, before any probe runs
        return plan

    @classmethod
    def stored(cls, record: Mapping, tables: Mapping[str, pd.DataFrame]) -> _Plan:
        """The plan a stored run was started with: its own settings, layer table and costs."""
        saved = record["settings"]
        return cls(
            saved["target"],
            hwmodels.load_device(saved["target"]),
            tuple(record["objectives"]),
            dict(record["budgets"]),
            tuple(saved["candidates"]),
            settings_from_json(saved["probe"]),
            saved["batch_size"],
            saved["max_points"],
            saved["validate"],
            saved.get("max_drop"),
            saved.get("max_evals"),
            saved.get("refine", 0),
            tables["layers"],
            tables["costs"],
        )


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
    max_drop: float | str | None = None,
    max_evals: int | None = None,
    refine: int = 0,
    ranges: str | None = None,
    bias_correction: bool | None = None,
    device: str | None = None,
    executor: Executor | None = None,
    db: str | Path | Store | None = None,
    resume: int | None = None,
    fresh: bool = False,
    progress: Progress | None = None,
    eval_timeout: float | None = None,
    on_eval_timeout: str = "stop",
) -> Run:
    """Find the per-layer formats of ``task``'s model on the Pareto frontier for ``target``.

    Probes the model's sensitivity (reused from the store when the same model, data and probe
    settings were probed before; an interrupted probe continues from its saved samples), costs
    every layer at every candidate on the target, solves for the frontier of predicted loss
    against the objectives (or, with ``budgets``, the one optimal point), validates every point
    and the uniform baselines by fake-quantizing the model and evaluating it on the task's
    held-out data, and stores it all, point by point.

    Args:
        task: The model, calibration data, loss and metric.
        target: A device name (``hwmodels.list_devices()``) or a device TOML path.
        objectives: One or two cost columns to trade against the predicted loss (``latency_s``,
            ``energy_j``, ``weight_bytes``, ``bops`` or a target column such as ``flash_bytes``).
            Two give an approximate three-objective frontier.
        budgets: Cost column -> upper limit. Given, the search returns the one optimal point
            within them; the device's own capacities (flash, SRAM, LUTs...) always apply.
        candidates: Candidate names to choose from, each one the target runs; default: every
            candidate the target runs.
        settings: Probe settings; default ``ProbeSettings()`` (Hessian traces of weights and
            activations).
        batch_size: Batch size the cost model assumes.
        measured: A measured latency table (``mpq.measure_latency`` / ``mpq measure --out``: a
            CSV path or DataFrame with layer, candidate, latency_s at the same batch size) that
            replaces the model's latency for the pairs it covers.
        max_points: At most this many frontier points: all of them when the exact frontier is
            that small, else the exact optima at this many evenly spaced budgets of the first
            objective; with one objective, the optimum at each uniform baseline's cost is added.
        validate: Evaluate every point on held-out data (needs ``task.evaluate``).
        max_drop: The largest drop of the measured metric below the float model's that a user
            accepts: a number in metric units (``0.01``) or a percentage of the float metric
            (``"1%"``). Given, the search spends its evaluations finding the cheapest
            configuration on the first objective whose *measured* metric is within the drop
            (bisection over exact solves, then local repair of the layers the proxy misjudged;
            see ``mpq._measured_frontier``), instead of validating a fixed frontier;
            ``run.best(max_drop=...)`` picks it.
        max_evals: Calls of ``task.evaluate`` the search may spend, the float model's included
            (``run.record["evaluations"]`` counts them); a budget given is spent whole: on
            frontier points of the usable region (within 10 % of float) as long as it has
            unmeasured ones, then the baselines, then refinement; default: ``max_points``
            frontier points in the usable region and every baseline, or 50 with ``max_drop``.
        refine: More evaluations spent pushing the measured frontier towards lower cost: one-layer
            moves to cheaper candidates from its points, least predicted loss per cost saved
            first, kept where no measured configuration beats them.
        ranges: How the quantizer chooses clipping ranges: ``mse`` (default), ``max`` or
            ``percentile`` (:class:`mpq.QuantizerSettings`); replaces ``settings.quantizer.ranges``.
        bias_correction: Remove the mean output shift weight quantization causes (default on);
            replaces ``settings.quantizer.bias_correction``. The quantizer's input grid is the
            one the target's kernels take (its file's ``activation_grid``), or a stricter one
            given in ``settings.quantizer``. The settings are recorded in the run
            (``run.record["quantizer"]``) and are part of the probe's cache key.
        device: Where the model runs: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: where the
            task's model is. The model (in place, moved back at the end) and the calibration
            batches move there once; the probe, apply and every evaluation run there, so
            ``task.evaluate`` must bring its held-out data to the model's device. Recorded in
            ``run.record["settings"]["device"]``.
        executor: Where the evaluations run (the validation of the points and baselines, the
            refinement's, the ``measured`` probe's pairs): any ``concurrent.futures.Executor``,
            such as :class:`mpq.ProcessPool`, a Dask client's ``get_executor()`` or a Ray
            pool's. A worker rebuilds the task from its spec (``task.spec``, set by
            :func:`mpq.load_task`; example name or ``file.py:factory``), checks its weight and
            data hashes, and keeps it for its next calls. Independent evaluations are submitted
            together; results are stored in submission order as they arrive, so the run stores
            what a serial run stores, and an interrupted run resumes with what was stored. A call
            whose worker died is retried once, alone. Default: this process.
        db: The store: None (``~/.cache/mpq/mpq.db``), a SQLite path or a SQLAlchemy URL.
        resume: The id of an unfinished run (interrupted, killed or failed) to finish: the
            tables, points and validations it stored are kept, the rest is done. Its target,
            objectives, budgets, candidates and settings are the run's own; the other arguments
            are ignored. The task must be the same model and data (checked by hash). Without it,
            an unfinished run of this same search (same model, data, settings, target, budgets
            and cost table) that no process is running any more is resumed the same way.
        fresh: Start a new run even when such an unfinished run is in the store.
        progress: ``progress(stage, done, total, message)`` callback.
        eval_timeout: Seconds a call of ``task.evaluate`` may take; one that runs longer is
            abandoned (:mod:`mpq._timeout`). Default: no limit.
        on_eval_timeout: ``stop``: the run fails (resumable) with ``EvaluationTimeoutError``;
            ``skip``: the configuration is recorded as not measured and the search goes on (the
            float model's evaluation always stops it).

    Returns:
        The stored run (``run.frontier``, ``run.best(...)``).

    Raises:
        UnknownNameError: an unknown target, candidate, objective or budget name.
        InvalidParameterError: a bad parameter value, a named candidate the target does not run, or
            a resumed run of another model or data.
        InfeasibleBudgetError: no configuration meets the budgets (raised before any probe runs,
            with the smallest achievable value).
        DropNotMetError: not even the highest candidates measure within ``max_drop`` (raised
            before anything is stored, naming both metrics).
        SearchInterrupted: Ctrl-C; the message says how to resume.
        StoreError: the store cannot be opened or written.
        WorkerError: an evaluation's worker died twice.
        EvaluationTimeoutError: an evaluation ran past ``eval_timeout`` (with ``stop``).
    """
    check_param("search", "fresh", fresh, OneOf((True, False)))
    check_param("search", "executor", executor, EXECUTOR)
    device = check_device("search", device)
    check_param("search", "db", db, DB)
    if resume is not None:
        check_param("search", "resume", resume, Interval(int, 1, None))
    if progress is not None and not callable(progress):
        raise InvalidParameterError(
            parameter_message(
                "search", "progress", "a callable progress(stage, done, total, message) or None", progress
            )
        )
    progress = progress or _silent
    limit = check_limit("search", eval_timeout, on_eval_timeout)
    if not isinstance(task, Task):
        raise InvalidParameterError(
            f"The 'task' parameter of search must be an mpq.Task. Got {type(task).__name__} instead."
        )
    with placed(task, device) as task, evaluation_limit(limit):
        if resume is not None:
            store = db if isinstance(db, Store) else Store(db, mode="write")
            record = _claim_for_resume(task, store, resume)
            if record is None:  # finished already
                return open_run(store, resume)
            run_id, plan = resume, _Plan.stored(record, store.run_tables(resume))
            runner = Runner(task, executor)
            runner.check()
        else:
            plan = _Plan.new(
                task,
                target=target,
                objectives=objectives,
                budgets=budgets,
                candidates=candidates,
                settings=with_quantizer("search", settings or ProbeSettings(), ranges, bias_correction),
                batch_size=batch_size,
                measured=measured,
                max_points=max_points,
                validate=validate,
                max_drop=max_drop,
                max_evals=max_evals,
                refine=refine,
                progress=progress,
            )
            runner = Runner(task, executor)
            runner.check()  # every worker error a user can fix comes before anything is stored
            measured_before = _check_drop_reachable(task, plan, runner, progress) if plan.max_drop is not None else None
            store = db if isinstance(db, Store) else Store(db, mode="write", create=True)
            fields = plan.record_fields(task)
            fields["settings"] |= {"device": str(model_device(task.model)), "executor": describe_executor(executor)}
            run_id = None if fresh else _resume_abandoned(store, fields, plan.costs, progress)
            if run_id is None:
                run_id = store.create_run(
                    tables={"layers": plan.layer_table, "costs": plan.costs}, owner=current_owner(), **fields
                )
        with store.running(run_id):
            _run_stages(task, store, run_id, plan, runner, progress, None if resume is not None else measured_before)
        return open_run(store, run_id)


#: Element bits at or below which a candidate's loss increase is measured with ``--probe
#: hybrid``: 2- and 3-bit formats move a layer far outside the quadratic regime.
HYBRID_MAX_BITS = 3


def _measured_candidates(settings: object, candidates: Sequence[str]) -> object:
    """Settings with the ``measured`` probe but no candidates of their own get the search's: all
    of them for ``measured`` alone; with trace probes beside (the hybrid), the candidates whose
    weight or activation elements have at most ``HYBRID_MAX_BITS`` bits (none: trace probes only)."""
    if not isinstance(settings, ProbeSettings) or "measured" not in settings.probes or settings.candidates:
        return settings
    traces = tuple(p for p in settings.probes if p != "measured")
    if not traces:
        return dataclasses.replace(settings, candidates=tuple(candidates))
    coarse = tuple(
        c
        for c in candidates
        if min(get_candidate(c).weight_format.element_bits, get_candidate(c).act_format.element_bits) <= HYBRID_MAX_BITS
    )
    if not coarse:
        return dataclasses.replace(settings, probes=traces)
    return dataclasses.replace(settings, candidates=coarse)


def _highest(plan: _Plan) -> dict[str, str]:
    """Every layer at its most precise candidate: the most bits per value, then the largest cost."""
    bits = candidate_table(plan.candidates).set_index("candidate")
    offered = plan.costs.assign(
        bits=lambda t: (
            bits.loc[t["candidate"], "weight_bits"].to_numpy() + bits.loc[t["candidate"], "act_bits"].to_numpy()
        )
    )
    best = offered.sort_values(["bits", plan.objectives[0]]).groupby("layer", sort=False).tail(1)
    return dict(zip(best["layer"], best["candidate"]))


def _check_drop_reachable(task: Task, plan: _Plan, runner: Runner, progress: Progress) -> dict[str, object]:
    """Measure the float model and the most precise configuration before anything is stored; a drop
    that not even the latter meets is refused. Returns both measurements and the activation
    ranges, so the run reuses them."""
    progress("validate", 0, 2, "float model and the most precise configuration")
    float_metric = evaluate(task, task.model)
    highest = _highest(plan)
    ranges = calibrate(task.model, task.calibration, quantizer=plan.settings.quantizer)
    metric = runner.call(evaluate_configuration, (highest, ranges), "the most precise configuration")
    drop = absolute_drop(plan.max_drop, float_metric)
    if metric < float_metric - drop:
        raise DropNotMetError(
            f"max_drop {plan.max_drop!r}: no configuration is within it: the most precise one the target runs "
            f"measures {metric:.4g} {task.metric_name} against the float model's {float_metric:.4g} (a drop of "
            f"{float_metric - metric:.4g}); allow a drop of at least that, or add more precise candidates."
        )
    return {"float_metric": float_metric, "highest": (highest, metric), "act_ranges": ranges}


def _resume_abandoned(store: Store, fields: dict, costs: pd.DataFrame, progress: Progress) -> int | None:
    """The id of an unfinished run of this same search that nobody is running (interrupted,
    failed, or its process killed), claimed for this process; None when there is none."""
    same = {name: fields[name] for name in _SAME_SEARCH if name != "settings"}
    settings = _search_settings(fields["settings"])
    costs_json = table_to_json(costs)
    for record in store.unfinished_runs(**same):
        if _search_settings(record["settings"]) != settings or owner_alive(store.url, record) is not False:
            continue
        stored_costs = store.run_tables(record["id"]).get("costs")
        if stored_costs is None or table_to_json(stored_costs) != costs_json:
            continue  # another device file or measured latency table: not the same search
        if store.claim_run(record["id"], seen=record, owner=current_owner()):
            how = record["error"] or "its process ended"
            progress(
                "resume", 1, 1, f"resuming run {record['id']} of this same search ({how}); --fresh starts a new run"
            )
            return record["id"]
    return None


def _search_settings(settings: Mapping) -> dict:
    """The settings that make two runs the same search (as JSON reads them back): not how they ran."""
    return json.loads(json.dumps({k: v for k, v in settings.items() if k not in _EXECUTION}, default=str))


def _claim_for_resume(task: Task, store: Store, run_id: int) -> dict | None:
    """The record of the run ``--resume`` names, claimed for this process; None when it is done.
    Another model or data, or a run a live process is running, is refused."""
    record = store.run_record(run_id)
    check_same_code(task, record, run_id)
    for what, stored, current in (
        ("model", record["model_hash"], model_hash(task.model)),
        ("calibration data", record["data_hash"], data_hash(task.calibration)),
    ):
        if stored != current:
            raise InvalidParameterError(
                f"run {run_id} searched task {record['task_name']!r} with {what} {stored[:12]}, but this task's "
                f"{what} hashes {current[:12]}; resume with the same --model, or start a new search without --resume."
            )
    if record["status"] == "done":
        return None
    if owner_alive(store.url, record) or not store.claim_run(run_id, seen=record, owner=current_owner()):
        raise InvalidParameterError(
            f"run {run_id} is being run by process {record['owner'] or 'another process'} right now; wait for it, or "
            "stop that process first."
        )
    return record


def _run_stages(
    task: Task,
    store: Store,
    run_id: int,
    plan: _Plan,
    runner: Runner,
    progress: Progress,
    measured_before: Mapping[str, object] | None = None,
) -> None:
    stored = store.run_tables(run_id)
    sensitivity = stored.get("sensitivity")
    if sensitivity is None:
        sensitivity = _sensitivity(task, store, plan, runner, progress)
        store.save_table(run_id, "sensitivity", sensitivity)

    om = stored.get("omega")
    if om is None:
        progress("omega", 0, 1, "quantization noise of every layer at every candidate")
        om = omega(
            task,
            sensitivity,
            plan.candidates,
            probe=PROBES[plan.settings.probes[0]][0],
            layer_table=plan.layer_table,
            quantizer=calibrate(task.model, task.calibration, quantizer=plan.settings.quantizer),
        )
        store.save_table(run_id, "omega", om)

    frontier, _ = store.run_points(run_id)
    # One objective, no budget: the frontier's points are chosen by measurement (the usable
    # region), so only the baselines are stored now; else the solver's points are.
    by_region = plan.validate and plan.max_drop is None and not plan.budgets and len(plan.objectives) == 1
    if plan.max_drop is None and frontier.empty:
        progress(
            "solve", 0, 1, f"{'optimal point' if plan.budgets else 'frontier'} over {len(om)} (layer, candidate) pairs"
        )
        labelled = _solve(om, plan)
        store.save_points(run_id, _point_rows([p for p in labelled if p[1]] if by_region else labelled, first=0))
    elif plan.max_drop is None:
        progress("solve", 1, 1, f"reused the {len(frontier)} stored points")

    float_metric = None
    if plan.validate:
        float_metric = store.run_record(run_id)["float_metric"]
        if float_metric is None:
            before = (measured_before or {}).get("float_metric")
            float_metric = evaluate(task, task.model) if before is None else before
            store.update_run(run_id, float_metric=float_metric)
        ranges = (measured_before or {}).get("act_ranges")
        measurer = _Measurer(task, store, run_id, om, plan, runner, progress, stored, ranges)
        if measured_before and "highest" in measured_before:
            measurer.add_measured(*measured_before["highest"], label=MEASURED_BEFORE_RUN)
        if by_region:
            measurer.validate_region(absolute_drop(USABLE_DROP, float_metric))
        if plan.max_drop is None:
            # With a named budget, refinement measures the baselines where they extend the frontier.
            if not (by_region and plan.max_evals is not None):
                measurer.validate_stored()
        else:
            measurer.cheapest_within_drop(absolute_drop(plan.max_drop, float_metric))
        # A budget the user named is spent whole: what the plan left goes to refinement too.
        extra = plan.refine + (measurer.search.left if plan.max_evals is not None else 0)
        if extra:
            measurer.refine(extra)
        frontier, _ = store.run_points(run_id)
        store.set_dominated(run_id, dict(zip(frontier["point"], dominated(frontier, plan.objectives))))
        frontier, _ = store.run_points(run_id)
    progress("store", 0, 1, "summarising the run")
    store.finish_run(run_id, "done", float_metric=float_metric, spearman=_spearman(frontier, float_metric))


class _Measurer:
    """Measured evaluations of one run: each configuration evaluated once and stored at once (as
    a point), bounded by the run's ``max_evals``, the float model's evaluation included."""

    def __init__(
        self,
        task: Task,
        store: Store,
        run_id: int,
        om: pd.DataFrame,
        plan: _Plan,
        runner: Runner,
        progress: Progress,
        tables: Mapping[str, pd.DataFrame],
        ranges: Calibration | None = None,
    ):
        self.task, self.store, self.run_id, self.om, self.plan, self.progress = task, store, run_id, om, plan, progress
        self.runner = runner
        #: The run's tables stored before this process took it up (a resumed run's ``proxy``...).
        self._tables = tables
        #: Configuration -> its evaluation, submitted ahead with the others of a batch.
        self._submitted: dict[tuple, Handle] = {}
        quantizer = plan.settings.quantizer
        self.ranges = calibrate(task.model, task.calibration, quantizer=quantizer) if ranges is None else ranges
        self.objective = plan.objectives[0]
        frontier, assignments = store.run_points(run_id)
        self.search = DropSearch(
            om,
            plan.costs,
            self.objective,
            plan.all_budgets,
            target=None,
            max_evals=plan.max_evals or (DEFAULT_DROP_EVALS if plan.max_drop is not None else 10**9),
            spent=1,
            measure=self._measure_new,
            width=runner.width,
            ahead=self._ahead,
        )
        by_point = {p: dict(rows[["layer", "candidate"]].values) for p, rows in assignments.groupby("point")}
        measured = frontier[frontier["measured_metric"].notna()] if len(frontier) else frontier
        # A resumed run: its phases replay what they measured before (the configuration measured
        # before the run began is known from the start, as it was then).
        for point, label, cost, metric in zip(
            measured.get("point", []),
            measured.get("label", []),
            measured.get(self.objective, []),
            measured.get("measured_metric", []),
        ):
            if label == MEASURED_BEFORE_RUN:
                self.remember(by_point[point], float(metric), cost=float(cost))
            else:
                self.search.replay[configuration_key(by_point[point])] = float(metric)
        measured_points = set(measured.get("point", []))
        # Stored points not measured yet get their configuration's measurement (a configuration
        # may be stored twice: a frontier point and a baseline); any other one becomes a point.
        self._stored: dict[tuple, list[tuple[int, str]]] = {}
        for point, label in zip(frontier.get("point", []), frontier.get("label", [])):
            if point not in measured_points:
                self._stored.setdefault(configuration_key(by_point[point]), []).append((int(point), label))
        self._proxy_points: list[solvers.Solution] = []
        self._proxy_keys: set[tuple] = set()  # measured and added as "frontier" points; others as "search"
        # Read once here, kept up to date by _add_point: no store read per evaluation.
        self._next_point = int(frontier["point"].max()) + 1 if len(frontier) else 0
        self._baselines = int(frontier["is_baseline"].sum()) if len(frontier) else 0

    def remember(self, assignment: Mapping[str, str], metric: float, cost: float) -> None:
        """A stored configuration's measurement (each distinct one counts as one evaluation)."""
        key = configuration_key(assignment)
        if key not in self.search.known:
            self.search.known[key] = (cost, metric)
            self.search.spent += 1

    def add_measured(self, assignment: Mapping[str, str], metric: float, label: str) -> None:
        """Store a configuration measured before the run was created, as a point of its own."""
        if configuration_key(assignment) in self.search.known:
            return
        solution = solvers.solve(self.om, self.plan.costs, {}, fixed=dict(assignment))
        self._add_point(label, solution, metric)
        self.remember(assignment, metric, solution.costs[self.objective])

    def _add_point(
        self, label: str, solution: solvers.Solution, metric: float, on_stored: Mapping[int, float] | None = None
    ) -> None:
        """Store a measured configuration as a new point, and its metric on the stored points of
        the same configuration (``on_stored``), in one transaction: a process killed between the
        two would resume with the configuration known and never add the point."""
        rows = _point_rows([(label, False, solution)], first=self._next_point, measured=[metric])
        self.store.add_points(self.run_id, rows, measured=on_stored)
        self._next_point += 1

    def _measure_new(self, solution: solvers.Solution) -> float:
        key = configuration_key(solution.assignment)
        stored = self._stored.pop(key, [])
        # An optimum of the proxy is a frontier point of its own, even where a baseline is the same configuration.
        label = "frontier" if key in self._proxy_keys else stored[0][1] if stored else "search"
        self.progress("validate", self.search.spent - 1, self._planned(), label)
        point = stored[0][0] if stored else self._next_point
        handle = self._submitted.pop(key, None) or self._submit(solution, point)
        handle.label = f"point {point}"  # submitted ahead, it had no number yet
        value = float(handle.result())
        on_stored = {stored_point: value for stored_point, _ in stored}
        if not stored or key in self._proxy_keys:
            self._add_point(label, solution, value, on_stored)
        else:
            self.store.set_measured(self.run_id, on_stored)
        return value

    def _submit(self, solution: solvers.Solution, point: int | None) -> Handle:
        return self.runner.submit(evaluate_configuration, (solution.assignment, self.ranges), f"point {point}")

    def _drop_ahead(self) -> None:
        """Cancel the evaluations submitted ahead that no phase took: the executor is left idle."""
        for handle in self._submitted.values():
            handle.cancel()
        self._submitted = {}

    def _ahead(self, solutions: Sequence[solvers.Solution]) -> None:
        """Have these evaluations running (:class:`DropSearch`'s ``width``): those submitted ahead
        before and no longer among them are cancelled (once started, their results are dropped)."""
        wanted = {configuration_key(s.assignment): s for s in solutions}
        for key in [k for k in self._submitted if k not in wanted]:
            self._submitted.pop(key).cancel()
        for key, solution in wanted.items():
            if key not in self._submitted:
                self._submitted[key] = self._submit(solution, None)

    def validate_stored(self) -> None:
        """Measure the stored points (frontier in an order that covers it evenly, then the
        baselines) until ``max_evals``; a configuration stored twice is measured once. The
        evaluations are independent: all of them are submitted at once, and stored in order.
        Points measured already are asked for too, in their place: a resumed run replays them."""
        frontier, assignments = self.store.run_points(self.run_id)
        by_point = frontier.set_index("point")
        todo = []
        for point in self._validation_order(frontier):
            row = by_point.loc[point]
            rows = assignments[assignments["point"] == point]
            solution = solvers.Solution(
                dict(rows[["layer", "candidate"]].values),
                float(row["predicted_loss"]),
                {self.objective: float(row[self.objective])},
                bool(row["optimal"]),
            )
            todo.append((point, solution, pd.isna(row["measured_metric"])))
        known, replay = self.search.known, self.search.replay
        keys = [configuration_key(solution.assignment) for _, solution, _ in todo]
        next_keys = list(dict.fromkeys(key for key in keys if key not in known))
        ahead = [key for key in next_keys[: self.search.left] if key not in replay]
        first = {key: (point, solution) for (point, solution, _), key in reversed(list(zip(todo, keys)))}
        self._drop_ahead()
        self._submitted = {key: self._submit(first[key][1], first[key][0]) for key in ahead}
        try:
            for (point, solution, unmeasured), key in zip(todo, keys):
                measured_elsewhere = key in known or key in replay  # another point's, or before a resume
                value = self.search.metric(solution)
                if value is None:
                    break  # max_evals spent
                if unmeasured and measured_elsewhere:
                    self.store.set_measured(self.run_id, {point: value})
        finally:
            self._drop_ahead()
        self.progress("validate", self.search.spent - 1, self.search.spent - 1, "done")

    def _validation_order(self, frontier: pd.DataFrame) -> list[int]:
        """The points :meth:`validate_stored` asks for, in order: the frontier's in an order that
        covers it evenly, then the baselines. Fixed the first time (the run table
        ``validation_order``): a resumed run asks for the same points, not those refinement
        added since."""
        stored = self._tables.get("validation_order")
        if stored is not None:
            return [int(point) for point in stored["point"]]
        proxy = frontier[~frontier["is_baseline"]].sort_values(self.objective)
        order = [int(proxy["point"].iloc[i]) for i in spread(len(proxy))]
        order += [int(point) for point in frontier.loc[frontier["is_baseline"], "point"]]
        self.store.save_table(self.run_id, "validation_order", pd.DataFrame({"point": order}))
        return order

    def validate_region(self, usable_drop: float) -> None:
        """Spend the frontier's evaluations where its configurations are usable: bisection over
        the dense proxy frontier finds its cheapest point within ``usable_drop`` of the float
        metric; then, without a named ``max_evals``, up to ``max_points`` proxy points from there
        to the most precise one are measured where the measured frontier gains most (with one,
        refinement spends the rest). Without any point within it, the whole proxy frontier is
        the region."""
        proxy = self._proxy()
        self.search.target = self.store.run_record(self.run_id)["float_metric"] - usable_drop
        boundary = self.search.bisect(proxy)
        if self.plan.max_evals is None:
            self.search.cover(proxy[proxy.index(boundary) :] if boundary is not None else proxy, self.plan.max_points)
        self._drop_ahead()

    def cheapest_within_drop(self, drop: float) -> None:
        """The cheapest configuration within ``drop`` of the float metric, by bisection over the
        proxy frontier and local repair (:class:`DropSearch`); every evaluation is stored."""
        float_metric = self.store.run_record(self.run_id)["float_metric"]
        self.search.target = float_metric - drop
        self.search.cheapest_within_drop(self._proxy())
        self._drop_ahead()
        self.progress("validate", self.search.spent - 1, self.search.spent - 1, "done")

    def _planned(self) -> int:
        """Configurations this run plans to measure (beside the float model), for progress."""
        if self.plan.max_evals is not None or self.plan.max_drop is not None:
            return self.search.max_evals - 1
        return self.plan.max_points + self._baselines + math.ceil(math.log2(_DROP_PROXY_POINTS)) + self.plan.refine

    def _proxy(self) -> list[solvers.Solution]:
        """The proxy frontier (exact optima of predicted loss), dense, ascending cost; solved once
        per run and stored (the run table ``proxy``), so a resumed run does not solve again."""
        if not self._proxy_points:
            self._proxy_points = self._load_or_solve_proxy()
            self._proxy_keys = {configuration_key(p.assignment) for p in self._proxy_points}
        return self._proxy_points

    def _load_or_solve_proxy(self) -> list[solvers.Solution]:
        stored = self._tables.get("proxy")
        if stored is not None:
            costs = [
                c for c in stored.columns if c not in ("proxy_point", "layer", "candidate", "predicted_loss", "optimal")
            ]
            return [
                solvers.Solution(
                    dict(zip(rows["layer"], rows["candidate"])),
                    float(rows["predicted_loss"].iloc[0]),
                    {c: float(rows[c].iloc[0]) for c in costs},
                    bool(rows["optimal"].iloc[0]),
                )
                for _, rows in stored.groupby("proxy_point", sort=True)
            ]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
            proxy = solvers.frontier(
                self.om,
                self.plan.costs,
                [self.objective],
                budgets=self.plan.all_budgets,
                max_points=max(self.plan.max_points, _DROP_PROXY_POINTS, self.plan.max_evals or 0),
            )
        table = pd.DataFrame(
            [
                {
                    "proxy_point": i,
                    "layer": layer,
                    "candidate": candidate,
                    "predicted_loss": p.predicted_loss,
                    "optimal": p.optimal,
                    **p.costs,
                }
                for i, p in enumerate(proxy)
                for layer, candidate in p.assignment.items()
            ]
        )
        self.store.save_table(self.run_id, "proxy", table)
        return proxy

    def refine(self, extra: int) -> None:
        """``extra`` more evaluations: with ``max_drop``, first more local repair of the cheapest
        configuration within the drop; then the measured frontier pushed outward where it gains
        most, from the proxy frontier's points, the stored points not measured yet (the
        baselines) and one-layer moves (:meth:`DropSearch.refine`)."""
        self.search.max_evals = self.search.spent + extra
        if self.plan.max_drop is not None:
            within = [(cost, key) for key, (cost, metric) in self.search.known.items() if metric >= self.search.target]
            if within:
                _, key = min(within)
                start = solvers.solve(self.om, self.plan.costs, {}, fixed=dict(key))
                self.search.descend(start, lambda _, value: value >= self.search.target)
        stored = [solvers.solve(self.om, self.plan.costs, {}, fixed=dict(key)) for key in self._stored]
        self.search.misjudged.clear()  # a move that broke the drop may still extend the frontier
        self.search.refine(self.search.left, self._proxy() + stored)
        self._drop_ahead()
        self.progress("validate", self.search.spent - 1, self.search.spent - 1, "done")


#: The label of the point measured before a ``max_drop`` run began (its most precise configuration).
MEASURED_BEFORE_RUN = "highest"
#: Points of the proxy frontier the bisections search over.
_DROP_PROXY_POINTS = 200
#: Without ``max_drop``, the frontier's evaluations go to configurations within this drop of
#: the float metric: further down, a model is rarely one a user deploys.
USABLE_DROP = "10%"


def _sensitivity(task: Task, store: Store, plan: _Plan, runner: Runner, progress: Progress) -> pd.DataFrame:
    """The stored probe of this model, data and settings, or a new one (checkpointed in the store)."""
    key = probe_key(task, plan.settings)
    found = store.find_probe(key)
    if found is not None:
        progress("probe", 1, 1, "reused the stored probe of this model, data and settings")
        return found
    table = probe(
        task,
        settings=plan.settings,
        checkpoint=store,
        layer_table=plan.layer_table,
        progress=lambda done, total, message: progress("probe", done, total, message),
        executor=runner.executor,
    )
    store.save_probe(
        key,
        model_hash=model_hash(task.model),
        data_hash=data_hash(task.calibration),
        settings={"json": settings_to_json(plan.settings)},
        table=table,
    )
    return table


def _check_cost_names(costs: pd.DataFrame, names: Sequence[str], what: str) -> None:
    columns = [c for c in costs.columns if c not in ("layer", "candidate") and pd.api.types.is_numeric_dtype(costs[c])]
    for name in names:
        if name not in columns:
            raise unknown_name(what, name, columns)


def _check_loss(task: Task, layer_table: pd.DataFrame, settings: ProbeSettings) -> None:
    """The loss of the first calibration batch must be a finite number (NaN outputs are caught here)
    that depends on the model's weights."""
    inputs, targets = task.calibration[0]
    with torch.no_grad():
        loss = task.loss_fn(run_model(task.model, inputs), targets)
    if not torch.isfinite(torch.as_tensor(loss)).all():
        raise TaskSpecError(
            f"task {task.name!r}: the loss of calibration batch 0 is {float(torch.as_tensor(loss).float().mean())}; "
            "check the model's outputs and the data for NaN or inf before searching."
        )
    check_loss(task, layer_table, settings)


def _baselines(om: pd.DataFrame, costs: pd.DataFrame, candidates: Sequence[str]) -> dict[str, solvers.Solution]:
    """The uniform configurations (every layer at one candidate) the target runs for every layer."""
    layer_names = list(dict.fromkeys(om["layer"]))
    found = {}
    for candidate in candidates:
        runs_everywhere = costs.loc[costs["candidate"] == candidate, "layer"].nunique() == len(layer_names)
        if runs_everywhere:
            found[f"all-{candidate}"] = solvers.solve(
                om, costs, budgets={}, fixed=dict.fromkeys(layer_names, candidate)
            )
    return found


def _solve(om: pd.DataFrame, plan: _Plan) -> list[tuple[str, bool, solvers.Solution]]:
    """The frontier (or the one budgeted optimum) and the uniform baselines, labelled.

    With one objective, the frontier also holds the optimum at each baseline's own cost, so
    every uniform configuration is compared with the best mixed one that costs no more.
    """
    baselines = _baselines(om, plan.costs, plan.candidates)
    if plan.budgets:
        points = [solvers.solve(om, plan.costs, plan.all_budgets)]
    else:
        anchors = [b.costs[plan.objectives[0]] for b in baselines.values()] if len(plan.objectives) == 1 else []
        with warnings.catch_warnings():
            # More non-dominated points than max_points is the usual case, and what max_points is
            # for: the solver returns the exact optima at max_points evenly spaced budgets.
            warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
            points = solvers.frontier(
                om,
                plan.costs,
                list(plan.objectives),
                budgets=plan.all_budgets,
                max_points=plan.max_points,
                anchor_costs=anchors,
            )
    return [("frontier", False, p) for p in points] + [(label, True, p) for label, p in baselines.items()]


def _point_rows(
    labelled: Sequence[tuple[str, bool, solvers.Solution]], *, first: int, measured: Sequence[float] | None = None
) -> list[dict]:
    """Store rows of (label, is_baseline, solution), numbered from ``first``."""
    return [
        {
            "point": first + i,
            "label": label,
            "is_baseline": is_baseline,
            "optimal": solution.optimal,
            "predicted_loss": solution.predicted_loss,
            "costs": solution.costs,
            "measured_metric": None if measured is None else measured[i],
            "assignment": solution.assignment,
        }
        for i, (label, is_baseline, solution) in enumerate(labelled)
    ]


def _spearman(frontier: pd.DataFrame, float_metric: float | None) -> float | None:
    """Rank correlation of predicted loss with the measured metric drop, over every point."""
    if float_metric is None or len(frontier) < 3:
        return None
    drop = float_metric - frontier["measured_metric"]
    if drop.nunique() < 2 or frontier["predicted_loss"].nunique() < 2:
        return None  # a constant ranks nothing
    if unresolved(frontier["measured_metric"], "metric") is not None:
        return None  # a rho over differences the held-out set cannot resolve is noise
    return float(spearmanr(frontier["predicted_loss"], drop).statistic)
