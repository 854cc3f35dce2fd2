"""The stages of a run: probe -> omega -> solve -> measure -> store. Each stage keeps what it
stored, so a resumed run does only what is missing."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd

import solvers
from mpq._apply import calibrate as calibrate_quantizer
from mpq._executors import Runner
from mpq._formats import candidate_table
from mpq._heldout import evaluate, evaluate_configuration
from mpq._measured_frontier import absolute_drop, distinct_configurations, dominated, metric_drop, unresolved
from mpq._omega import omega
from mpq._probes import PROBES
from mpq._probes.api import run_probe
from mpq._probes.settings import families, settings_to_json
from mpq._quantizer import Calibration
from mpq._search.decision import frontier_decision, stops_on_decision
from mpq._search.evaluator import DEFAULT_DROP_EVALS, UNBOUNDED, Evaluator
from mpq._search.identity import Identity
from mpq._search.measure import Measurements, point_rows, validation_order
from mpq._search.plan import Plan, Progress
from mpq._search.strategies import spend
from mpq._storage import Store
from mpq._task import Task
from mpq.exceptions import DropNotMetError


def calibrate(task: Task, plan: Plan) -> Calibration:
    """The calibrated quantizer every measured configuration is quantized with (and omega's errors
    are computed with): computed here only, once a search, and passed through as it is."""
    return calibrate_quantizer(task.model, task.calibration, quantizer=plan.settings.probe.quantizer)


def check_drop_reachable(task: Task, plan: Plan, runner: Runner, calibration: object, progress: Progress) -> dict:
    """Measure the float model and the most precise configuration before anything is stored; a drop
    that not even the latter meets is refused. Returns both measurements, so the run reuses them."""
    progress("validate", 0, 2, "float model and the most precise configuration")
    float_metric = evaluate(task, task.model)
    highest = plan.highest()
    metric = runner.call(evaluate_configuration, (highest, calibration), "the most precise configuration")
    max_drop = plan.settings.max_drop
    drop = metric_drop(float_metric, metric, plan.settings.higher_is_better)
    if drop > absolute_drop(max_drop, float_metric):
        raise DropNotMetError(
            f"max_drop {max_drop!r}: no configuration is within it: the most precise one the target runs "
            f"measures {metric:.4g} {task.metric_name} against the float model's {float_metric:.4g} (a drop of "
            f"{drop:.4g}); allow a drop of at least that, or add more precise candidates."
        )
    return {"float_metric": float_metric, "highest": (highest, metric)}


def run_stages(
    task: Task,
    store: Store,
    run_id: int,
    plan: Plan,
    identity: Identity,
    runner: Runner,
    calibration: Calibration | None,
    progress: Progress,
    before: Mapping[str, object] | None = None,
) -> None:
    stored = store.run_tables(run_id)
    sensitivity = stored.get("sensitivity")
    if sensitivity is None:
        sensitivity = _sensitivity(task, store, plan, identity, runner, calibration, progress)
        store.save_table(run_id, "sensitivity", sensitivity)

    om = stored.get("omega")
    if om is None:
        progress("omega", 0, 1, "quantization noise of every layer at every candidate")
        om = omega(
            task,
            sensitivity,
            plan.settings.candidates,
            probe=PROBES[plan.settings.probe.probes[0]][0],
            layer_table=plan.layer_table,
            quantizer=calibrate(task, plan) if calibration is None else calibration,
        )
        store.save_table(run_id, "omega", om)

    frontier, _ = store.run_points(run_id)
    settings, chain = plan.settings, plan.strategy
    # The solver's points are stored for the frontier strategy to measure (or to be shown
    # unmeasured), unless a covering measures the proxy's optima itself; the uniform baselines
    # too, except in a search for a drop (it measures the uniform configurations it needs).
    solved = ("frontier" in chain and "region" not in chain) or not settings.validate
    if (settings.max_drop is None or solved) and frontier.empty:
        progress(
            "solve", 0, 1, f"{'optimal point' if plan.budgets else 'frontier'} over {len(om)} (layer, candidate) pairs"
        )
        store.save_points(run_id, point_rows(_solve(om, plan, frontier=solved), first=0))
        frontier, _ = store.run_points(run_id)
    elif settings.max_drop is None or solved:
        progress("solve", 1, 1, f"reused the {len(frontier)} stored points")
    # The order of the points the solve stored, fixed before any is measured (also when the process
    # died between the two writes); a run whose points are measurements has none.
    if "validation_order" not in stored and len(frontier) and frontier["measured_metric"].isna().all():
        stored["validation_order"] = validation_order(frontier, plan.objectives[0])
        store.save_table(run_id, "validation_order", stored["validation_order"])

    float_metric = None
    if settings.validate:
        float_metric = store.run_record(run_id)["float_metric"]
        if float_metric is None:
            float_metric = evaluate(task, task.model) if before is None else before["float_metric"]
            store.update_run(run_id, float_metric=float_metric)
        _measure(task, store, run_id, om, plan, runner, calibration, progress, stored, float_metric, before)
        frontier, _ = store.run_points(run_id)
        is_dominated = dominated(frontier, plan.objectives, higher_is_better=settings.higher_is_better)
        store.set_dominated(run_id, dict(zip(frontier["point"], is_dominated)))
        frontier, assignments = store.run_points(run_id)
        frontier = distinct_configurations(frontier, assignments)  # a baseline a strategy measured again counts once
    progress("store", 0, 1, "summarising the run")
    spearman = _spearman(frontier, float_metric, settings.higher_is_better)
    store.finish_run(run_id, "done", float_metric=float_metric, spearman=spearman)


def _measure(
    task: Task,
    store: Store,
    run_id: int,
    om: pd.DataFrame,
    plan: Plan,
    runner: Runner,
    calibration: Calibration | None,
    progress: Progress,
    tables: Mapping[str, pd.DataFrame],
    float_metric: float,
    before: Mapping[str, object] | None,
) -> None:
    """Run the plan's strategies over one evaluator; with a drop, then every cheaper uniform configuration."""
    settings = plan.settings
    measurements = Measurements(store, run_id, om, plan, tables, progress)
    named = settings.max_evals is not None
    evaluator = Evaluator(
        om,
        plan.costs,
        plan.objectives[0],
        plan.all_budgets,
        float_metric=float_metric,
        drop=None if settings.max_drop is None else absolute_drop(settings.max_drop, float_metric),
        max_points=settings.max_points,
        max_evals=settings.max_evals if named else DEFAULT_DROP_EVALS if settings.max_drop is not None else UNBOUNDED,
        spent=1,
        submit=lambda solution: runner.submit(evaluate_configuration, (solution.assignment, calibration), "point"),
        recorder=measurements,
        proxy=measurements.proxy,
        pool=measurements.pool(tables.get("validation_order")),
        uniforms=_uniforms(om, plan),
        bits={
            row.candidate: (row.weight_bits, row.act_bits) for row in candidate_table(settings.candidates).itertuples()
        },
        replay=measurements.replay,
        width=runner.width,
        budget_named=named,
        higher_is_better=settings.higher_is_better,
        ties=settings.ties,
    )
    # Known from the start, as they were when the run began (a resumed run reads them back).
    for assignment, metric in measurements.before:
        evaluator.remember(solvers.price(om, plan.costs, assignment), metric)
    if before is not None:
        measurements.add_before(evaluator, *before["highest"])
    measurements.planned = measurements.planned_for(evaluator)
    spend(evaluator, plan.strategy, refine=settings.refine)
    measurements.fill_known({key: (cost, evaluator.measured(score)) for key, (cost, score) in evaluator.known.items()})
    progress("validate", evaluator.spent - 1, evaluator.spent - 1, "done")


def _sensitivity(
    task: Task,
    store: Store,
    plan: Plan,
    identity: Identity,
    runner: Runner,
    calibration: Calibration | None,
    progress: Progress,
) -> pd.DataFrame:
    """The stored probe of this model, data and settings, or a new one (checkpointed in the store)."""
    found = store.find_probe(identity.probe_key)
    if found is not None:
        progress("probe", 1, 1, "reused the stored probe of this model, data and settings")
        return found
    settings = plan.settings.probe
    decision = None
    if stops_on_decision(settings):
        # Reported before the stop rule's quantization errors are computed: they are the probe's
        # cost (a stage is timed from its first report, bench_search.py), not the costs stage's.
        progress("probe", 0, settings.max_samples, "quantization noise of every layer at every candidate (stop rule)")
        decision = frontier_decision(task, plan, calibrate(task, plan) if calibration is None else calibration)
    table = run_probe(  # the search's identity and runner: the task is not hashed again
        task,
        settings,
        key=identity.probe_key,
        runner=runner if "measured" in families(settings) else None,
        checkpoint=store,
        layer_table=plan.layer_table,
        progress=lambda done, total, message: progress("probe", done, total, message),
        threads=runner.threads,
        decision=decision,
    )
    store.save_probe(
        identity.probe_key,
        model_hash=identity.model_hash,
        data_hash=identity.data_hash,
        settings={"json": settings_to_json(settings)},
        table=table,
    )
    return table


def _baselines(om: pd.DataFrame, costs: pd.DataFrame, candidates: Sequence[str]) -> dict[str, solvers.Solution]:
    """The uniform configurations (every layer at one candidate) the target runs for every layer."""
    layer_names = list(dict.fromkeys(om["layer"]))
    found = {}
    for candidate in candidates:
        if costs.loc[costs["candidate"] == candidate, "layer"].nunique() == len(layer_names):
            found[f"all-{candidate}"] = solvers.price(om, costs, dict.fromkeys(layer_names, candidate))
    return found


def _uniforms(om: pd.DataFrame, plan: Plan) -> dict[str, solvers.Solution]:
    """The uniform configurations within every budget, by label."""
    return {
        label: solution
        for label, solution in _baselines(om, plan.costs, plan.settings.candidates).items()
        if all(solution.costs.get(name, 0.0) <= limit * (1 + 1e-9) for name, limit in plan.all_budgets.items())
    }


def _solve(om: pd.DataFrame, plan: Plan, *, frontier: bool) -> list[tuple[str, bool, solvers.Solution]]:
    """The frontier (or the one budgeted optimum; neither without ``frontier``) and the uniform
    baselines, labelled.

    With one objective, the frontier also holds the optimum at each baseline's own cost, so
    every uniform configuration is compared with the best mixed one that costs no more.
    """
    baselines = _baselines(om, plan.costs, plan.settings.candidates)
    points = []
    if frontier and plan.budgets:
        points = [solvers.solve(om, plan.costs, plan.all_budgets, ties=plan.ties)]
    elif frontier:
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
                max_points=plan.settings.max_points,
                anchor_costs=anchors,
                ties=plan.ties,
            )
    return [("frontier", False, p) for p in points] + [(label, True, p) for label, p in baselines.items()]


def _spearman(frontier: pd.DataFrame, float_metric: float | None, higher_is_better: bool = True) -> float | None:
    """Rank correlation of predicted loss with the measured metric drop, over every point."""
    if float_metric is None or len(frontier) < 3:
        return None
    drop = metric_drop(float_metric, frontier["measured_metric"], higher_is_better)
    if drop.nunique() < 2 or frontier["predicted_loss"].nunique() < 2:
        return None  # a constant ranks nothing
    if unresolved(frontier["measured_metric"], "metric") is not None:
        return None  # a rho over differences the held-out set cannot resolve is noise
    if drop.isna().any():
        return math.nan  # as scipy's spearmanr had it: an unmeasured point leaves no rho
    # Spearman's rho: Pearson's r of the ranks, ties at their mean rank (scipy's spearmanr, which
    # is not imported for it: scipy.stats alone took seconds of a search's start on a busy machine).
    return float(frontier["predicted_loss"].rank().corr(drop.rank()))
