"""``mpq.search``: probe -> cost -> solve -> measure -> store.

The package, in the order a run goes through it:

- ``plan``: the settings (checked, versioned) and the plan (device, layer table, cost table),
  built once before the first probe sample;
- ``identity``: the weight, data and probe hashes, computed once;
- ``resume``: taking up an unfinished run;
- ``pipeline``: the stages (probe, omega, solve, measure, store), inside the store's run
  lifecycle (:meth:`Store.running`: the run's owner, Ctrl-C and failures recorded with how to
  resume);
- ``evaluator``: the :class:`Evaluator` every measured evaluation goes through (memo, replay,
  budget, look-ahead, the one callback that stores a measurement); ``measure``: that callback;
- ``strategies``: which configurations to measure, one class each.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path

import pandas as pd

from mpq._defaults import DEFAULT_OBJECTIVES, DEFAULT_TARGET
from mpq._executors import EXECUTOR, Runner, describe_executor
from mpq._fingerprint import check_same_code
from mpq._liveness import current_owner
from mpq._param_checks import Interval, OneOf, check_param
from mpq._placement import check_device, placed
from mpq._probes import ProbeSettings, task_probes
from mpq._probes.settings import DECISION_MIN_SAMPLES, with_quantizer
from mpq._runs import Run, open_run
from mpq._search.decision import decision_hash
from mpq._search.identity import Identity
from mpq._search.pipeline import calibrate, check_drop_reachable, run_stages
from mpq._search.plan import Plan, Progress
from mpq._search.resume import claim_for_resume, resume_abandoned
from mpq._search.strategies import Strategy
from mpq._storage import DB, Store, open_store
from mpq._task import Task, model_device
from mpq._threads import resolve_threads, torch_threads
from mpq._timeout import check_limit, evaluation_limit
from mpq.exceptions import InvalidParameterError
from mpqvocab import parameter_message

logger = logging.getLogger("mpq.search")

__all__ = ["Progress", "Strategy", "search"]


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
    strategy: str | Sequence[str | Strategy] | None = None,
    ranges: str | None = None,
    bias_correction: bool | None = None,
    fuse: bool = True,
    device: str | None = None,
    executor: Executor | None = None,
    db: str | Path | Store | None = None,
    resume: int | None = None,
    fresh: bool = False,
    progress: Progress | None = None,
    eval_timeout: float | None = None,
    on_eval_timeout: str = "stop",
    threads: int | None = None,
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
        settings: Probe settings; default ``ProbeSettings(stop="decision", min_samples=4)``: Hessian traces of
            weights and activations (the task's ``default_probes`` where it names them), sampled
            until the proxy frontier is resolved within the estimator's error
            (:mod:`mpq._search.decision`); ``stop="tolerance"`` samples until every layer's trace
            is within the tolerance instead.
        batch_size: Batch size the cost model assumes.
        measured: A measured latency table (``mpq.measure_latency`` / ``mpq measure --out``: a
            CSV path or DataFrame with layer, candidate, latency_s at the same batch size) that
            replaces the model's latency for the pairs it covers.
        max_points: At most this many frontier configurations are measured (the ``region``
            strategy's bisection, covering and sweep together), the uniform baselines besides;
            the ``frontier`` strategy's points: all of them when the exact frontier is that
            small, else the exact optima at this many evenly spaced budgets of the first
            objective; with one objective, the optimum at each uniform baseline's cost is added.
        validate: Evaluate every point on held-out data (needs ``task.evaluate``).
        max_drop: The largest drop of the measured metric below the float model's that a user
            accepts: a number in metric units (``0.01``) or a percentage of the float metric
            (``"1%"``); for a lower-is-better metric (``Task.higher_is_better=False``, a
            perplexity) the largest rise above it (``"5%"``: at most 1.05 times the float
            perplexity). Given, the search spends its evaluations finding the cheapest
            configuration on the first objective whose *measured* metric is within the drop
            (bisection over exact solves, then local repair of the layers the proxy misjudged),
            instead of validating a fixed frontier; whatever the strategy, every uniform
            configuration cheaper than the one found is measured last; ``run.best(max_drop=...)``
            picks it.
        max_evals: Calls of ``task.evaluate`` the search may spend, the float model's included
            (``run.record["evaluations"]`` counts them); a budget given is spent whole: on
            frontier points of the usable region (within 10 % of float) as long as it has
            unmeasured ones, then the baselines, then refinement; default: ``max_points``
            frontier points in the usable region and every baseline, or 50 with ``max_drop``.
        refine: More evaluations spent pushing the measured frontier towards lower cost: one-layer
            moves to cheaper candidates from its points, least predicted loss per cost saved
            first, kept where no measured configuration beats them.
        strategy: How the evaluations are spent: a built-in strategy's name (``"region"``,
            ``"frontier"``, ``"drop"``, ``"refine"``, ``"greedy"``, ``"nsga2"``; see
            ``mpq._search.strategies``), a comma-separated chain (``"drop,refine"``) or a list of
            names and objects with a ``run(evaluator)`` method; each spends what the ones before it
            left. Default: :func:`~mpq._search.strategies.default_strategy` (``drop`` with
            ``max_drop``, ``frontier`` with ``budgets`` or two objectives, else ``region``; then
            ``refine`` when ``refine`` or a named ``max_evals`` asks for it).
        ranges: How the quantizer chooses clipping ranges: ``mse`` (default), ``max`` or
            ``percentile`` (:class:`mpq.QuantizerSettings`); replaces ``settings.quantizer.ranges``.
        bias_correction: Remove the mean output shift weight quantization causes (default on);
            replaces ``settings.quantizer.bias_correction``. The quantizer's input grid is the
            one the target's kernels take (its file's ``activation_grid``), or a stricter one
            given in ``settings.quantizer``. The settings are recorded in the run
            (``run.record["quantizer"]``) and are part of the probe's cache key.
        fuse: Keep each of the task's fused sets (``Task.fused``: q/k/v and gate/up of a
            decoder) at one candidate in every configuration, as serving engines that fuse them
            need; False chooses per layer. Recorded in ``run.record["settings"]["ties"]``.
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
        threads: torch's intra-op threads for the whole search: the probe, every evaluation,
            and each of the executor's workers (the caller's count is restored after it);
            default ``$MPQ_THREADS``, else 1, which measured fastest for the built-in examples
            (docs/speed.md). Recorded in ``run.record["settings"]["threads"]``.

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
    if not isinstance(task, Task):
        raise InvalidParameterError(
            f"The 'task' parameter of search must be an mpq.Task. Got {type(task).__name__} instead."
        )
    limit = check_limit("search", eval_timeout, on_eval_timeout)
    threads = resolve_threads("search", threads)
    with torch_threads(threads), placed(task, device) as task, evaluation_limit(limit):
        before = None
        if resume is not None:
            store = open_store(db, "write")
            record = store.run_record(resume)
            check_same_code(task, record, resume)
            plan = Plan.stored(record, store.run_tables(resume))
            identity = Identity.of(task, plan.settings.probe, decision_hash(plan))
            if claim_for_resume(store, resume, identity) is None:  # finished already
                return open_run(store, resume)
            run_id = resume
            runner = Runner(task, executor, identity.hashes, threads)
            runner.check()
            calibration = calibrate(task, plan) if plan.settings.validate else None
        else:
            plan = Plan.new(
                task,
                target=target,
                objectives=objectives,
                budgets=budgets,
                candidates=candidates,
                settings=with_quantizer(
                    "search",
                    settings
                    or ProbeSettings(probes=task_probes(task), stop="decision", min_samples=DECISION_MIN_SAMPLES),
                    ranges,
                    bias_correction,
                ),
                batch_size=batch_size,
                measured=measured,
                max_points=max_points,
                validate=validate,
                max_drop=max_drop,
                max_evals=max_evals,
                refine=refine,
                strategy=strategy,
                fuse=fuse,
                progress=progress,
            )
            # Hashed once: the runner, record and probe share it.
            identity = Identity.of(task, plan.settings.probe, decision_hash(plan))
            runner = Runner(task, executor, identity.hashes, threads)
            runner.check()  # every worker error a user can fix comes before anything is stored
            calibration = calibrate(task, plan) if plan.settings.validate else None
            if plan.settings.max_drop is not None:
                before = check_drop_reachable(task, plan, runner, calibration, progress)
            store = open_store(db, "write", create=True)
            fields = plan.record_fields(task, identity)
            fields["settings"] |= {
                "device": str(model_device(task.model)),
                "executor": describe_executor(executor),
                "threads": threads,
            }
            run_id = None if fresh else resume_abandoned(store, fields, plan.costs, progress)
            if run_id is None:
                run_id = store.create_run(
                    tables={"layers": plan.layer_table, "costs": plan.costs}, owner=current_owner(), **fields
                )
        with store.running(run_id):
            run_stages(task, store, run_id, plan, identity, runner, calibration, progress, before)
        return open_run(store, run_id)


def _silent(stage: str, done: int, total: int, message: str) -> None:
    logger.debug("%s %d/%d %s", stage, done, total, message)
