"""``probe(task, ...)``: the sensitivity table of every layer, resumable, with progress."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Executor

import pandas as pd
import torch

from mpq._executors import EXECUTOR, Runner
from mpq._formats import get_candidate
from mpq._layers import LAYER_TABLE, layers
from mpq._param_checks import check_param
from mpq._placement import check_device, placed
from mpq._probes.checkpoint import CheckpointStore, probe_key
from mpq._probes.fisher import MAX_OUTPUT_ELEMS, FisherFamily, is_softmax_cross_entropy
from mpq._probes.graph import LayerGraph, Target, calibration_batches, gradients
from mpq._probes.hutchinson import HessianFamily
from mpq._probes.measured import run_measured
from mpq._probes.sampling import Key, RunningStats, run_family, sample_generator
from mpq._probes.settings import PROBES, TRACE_FAMILIES, ProbeSettings, check_settings, check_task, families
from mpq._task import Task, run_model
from mpq._threads import DEFAULT_THREADS, resolve_threads, torch_threads
from mpq._warnings import mpq_warn
from mpq.exceptions import InvalidParameterError, LossIndependentError, ProbeError, SensitivityWarning

logger = logging.getLogger("mpq.probes")

#: Columns of the sensitivity table, in order.
SENSITIVITY_COLUMNS = [
    "layer",
    "probe",
    "candidate",
    "value",
    "stderr",
    "n_samples",
    "n_params",
    "converged",
    "hvps",
    "backwards",
    "seconds",
]

Progress = Callable[[int, int, str], None]


def probe(
    task: Task,
    probes: list[str] | tuple[str, ...] | None = None,
    *,
    settings: ProbeSettings | None = None,
    progress: Progress | None = None,
    checkpoint: CheckpointStore | None = None,
    layer_table: pd.DataFrame | None = None,
    executor: Executor | None = None,
    device: str | torch.device | None = None,
    threads: int | None = None,
    decision: Callable[[pd.DataFrame], bool] | None = None,
) -> pd.DataFrame:
    """Measure how sensitive the task's loss is to every quantizable layer.

    Trace probes (``hessian_*``, ``fisher_*``, ``efisher_*``; see :class:`ProbeSettings` and
    the ``mpq._probes`` modules for their exact definitions) sample until every layer's
    standard error is below ``settings.tolerance`` of its value, or ``max_samples``; all
    layers are estimated from the same passes. A trace over at most
    ``settings.exact_max_params`` elements that still lags after ``min_samples`` samples is
    computed exactly instead (one product per element, on every calibration batch) where that
    costs less than the samples it saves; the sampling then waits only for the others. A
    negative trace is reported as it is, with a SensitivityWarning naming the layers. ``measured`` quantizes one layer at a time to every
    candidate and measures the real loss increase.

    With a ``checkpoint``, the state is saved after every sample under a key that hashes the
    weights, calibration data and settings; a later call with the same three continues from
    the samples already taken (an interrupted run, e.g. by an exception raised from
    ``progress``, loses nothing) and gives the numbers an uninterrupted run gives.

    Args:
        task: The task; its model is probed in eval mode and left as it was.
        probes: Probe names; replaces ``settings.probes`` when given.
        settings: Tolerance, sample limits, seed, sub-sampling, estimator, candidates. None
            takes the defaults, with the task's ``default_probes`` where it names them. The
            ``split`` estimator becomes ``hutchinson`` for a task whose output it cannot factor
            (:func:`fit_estimator`).
        progress: ``progress(done, total, message)``, called after every sample of every
            family (``total`` is the sample cap) and every measured pair. An exception it raises
            stops the probe, after the checkpoint is saved.
        checkpoint: Where to save and resume the state, e.g. ``ProbeCheckpoint("probes/")``.
        layer_table: The model's layer table (:func:`mpq.layers` on the first calibration
            batch), when the caller has it already; default: traced here.
        executor: Where the ``measured`` pairs run (any ``concurrent.futures.Executor``: an
            :class:`mpq.ProcessPool`, a Dask client's ``get_executor()``); each worker rebuilds
            the task from ``task.spec`` (:func:`mpq.load_task`), hash checked. Default: here.
        device: Where the model runs: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: where the
            task's model is. The model and calibration batches move there for the probe and
            back after it; a device this machine lacks is refused before anything runs.
        threads: torch's intra-op threads for the probe, here and on the executor's workers
            (the caller's count is restored after it); default ``$MPQ_THREADS``, else 1.
        decision: The test of the ``decision`` stop rule (``settings.stop``): called after each
            sample past ``min_samples`` with the family's table so far (``attrs["samples"]``:
            the samples taken), it returns True once what the caller decides from the traces
            is resolved; :func:`mpq.search` passes the proxy frontier's
            (:mod:`mpq._search.decision`). Required by, and only used with, that rule.

    Returns:
        The sensitivity table, one row per (layer, probe) for trace probes and per (layer,
        probe, candidate) for ``measured``: ``layer``; ``probe``; ``candidate`` (missing, NA, for
        trace probes); ``value`` (a trace, in loss units per squared weight or activation unit, or for
        ``measured`` the loss increase, in loss units); ``stderr`` (its standard error, same
        units; 0 for an exact trace); ``n_samples`` (Monte Carlo samples, each over every
        calibration batch unless ``batches_per_sample`` is set; for an exact trace the unit
        vectors it took, one per element of ``n_params``, each over every calibration batch; for
        ``measured`` the calibration samples);
        ``n_params`` (elements the trace is over: weight elements for ``*_w``, input elements
        per sample for ``*_a``; weight elements for ``measured``); ``converged`` (standard error
        within the tolerance; always True for an exact trace); ``hvps`` and ``backwards``
        (Hessian-vector products and backward passes the row's family spent, each over one
        calibration batch, the exact traces' included: an exact Hessian trace takes one HVP per
        element and batch, an exact Fisher trace one Jacobian-vector product, counted as a
        backward pass); ``seconds`` (the
        family's wall time, s). Layers are in the order they run; embeddings have no ``*_a``
        rows (their inputs are indices).

    Raises:
        InvalidParameterError: a bad argument or setting (the message names it).
        UnknownNameError: an unknown probe or candidate name.
        ProbeError: the loss is not finite, does not depend on the weights (no gradient, or every
            trace of a family exactly 0), a layer ran but the loss does not depend on it, or
            an estimator's requirement on the model or loss does not hold (the message says
            which setting to change).
    """
    check_task("probe", task)
    settings = check_settings("probe", ProbeSettings(probes=task_probes(task)) if settings is None else settings)
    if probes is not None:
        settings = check_settings("probe", dataclasses.replace(settings, probes=probes))
    settings = fit_estimator(task, settings)  # as mpq search and mpq probe sample it
    if progress is not None and not callable(progress):
        raise InvalidParameterError(
            f"The 'progress' parameter of probe must be a callable progress(done, total, message) or None. "
            f"Got {type(progress).__name__} instead."
        )
    if checkpoint is not None and not isinstance(checkpoint, CheckpointStore):
        raise InvalidParameterError(
            f"The 'checkpoint' parameter of probe must have load_probe_checkpoint(key) and "
            f"save_probe_checkpoint(key, state) methods, like "
            f"ProbeCheckpoint(path). Got {type(checkpoint).__name__} instead."
        )
    check_param("probe", "layer_table", layer_table, LAYER_TABLE)
    check_param("probe", "executor", executor, EXECUTOR)
    device = check_device("probe", device)
    for name in settings.candidates:
        get_candidate(name)  # unknown formats fail now, not after the trace probes ran
    # A task the executor's workers cannot rebuild fails now too (Runner), not after the trace probes.
    threads = resolve_threads("probe", threads)
    if decision is not None and not callable(decision):
        raise InvalidParameterError(
            f"The 'decision' parameter of probe must be a callable decision(table) -> bool or None. "
            f"Got {type(decision).__name__} instead."
        )
    sampled = any(family in TRACE_FAMILIES for family in families(settings))
    if settings.stop == "decision" and sampled and not callable(decision):
        raise InvalidParameterError(
            "probe: the 'decision' stop rule stops when the search's frontier is resolved, so it needs the search's "
            "test (decision=); call mpq.search, or probe with ProbeSettings(stop='tolerance')."
        )
    runner = Runner(task, executor, threads=threads) if "measured" in families(settings) else None
    key = probe_key(task, settings) if checkpoint is not None else None
    with placed(task, device) as task:
        return run_probe(
            task,
            settings,
            key=key,
            runner=runner,
            checkpoint=checkpoint,
            layer_table=layer_table,
            progress=progress,
            threads=threads,
            decision=decision,
        )


def run_probe(
    task: Task,
    settings: ProbeSettings,
    *,
    key: str | None,
    runner: Runner | None,
    checkpoint: CheckpointStore | None = None,
    layer_table: pd.DataFrame | None = None,
    progress: Progress | None = None,
    threads: int = DEFAULT_THREADS,
    decision: Callable[[pd.DataFrame], bool] | None = None,
) -> pd.DataFrame:
    """:func:`probe` with its arguments checked and what hashes the task computed by the caller:
    the checkpoint's ``key`` (:func:`probe_key`; None without a checkpoint) and the ``runner``
    of the ``measured`` pairs (None when no probe is ``measured``); ``threads`` resolved, and the
    ``decision`` test where ``settings.stop`` is ``decision``."""
    state = (checkpoint.load_probe_checkpoint(key) if checkpoint is not None else None) or {}

    def save() -> None:
        if checkpoint is not None:
            checkpoint.save_probe_checkpoint(key, state)

    def report(done: int, total: int, message: str) -> None:
        logger.debug(message)
        if progress is not None:
            progress(done, total, message)

    rows: list[dict] = []
    with torch_threads(threads), _eval_mode(task.model):
        graph = LayerGraph(task, layers(task.model, task.calibration[0][0]) if layer_table is None else layer_table)
        batches = calibration_batches(task.calibration, settings.micro_batch_size)
        for family_name, names in families(settings).items():
            if family_name == "measured":
                measured = run_measured(
                    graph,
                    settings.micro_batch_size,
                    settings.candidates,
                    settings.quantizer,
                    state.setdefault("measured", {}),
                    lambda done, total, message: (save(), report(done, total, message)),
                    runner,
                )
                if not any(value for _, _, value, _ in measured["pairs"]):
                    raise LossIndependentError(
                        f"task {task.name}: quantizing any one layer to any candidate leaves the calibration loss "
                        "exactly as it was: the loss does not depend on the model's weights; compute loss_fn from "
                        "the model's output."
                    )
                rows += _measured_rows(graph, measured, sum(b.size for b in batches))
                continue
            stats, resolved = _sample_family(
                graph, family_name, names, batches, settings, state, save, report, decision
            )
            rows += _trace_rows(graph, stats, settings.tolerance, resolved)
            _warn_about(stats, family_name, settings, resolved)
    return pd.DataFrame(rows, columns=SENSITIVITY_COLUMNS)


def _sample_family(graph, family_name, names, batches, settings, state, save, report, decision):
    """Sample one family to its stopping rule; returns its statistics and, under the ``decision``
    rule, whether the decision was resolved (None under ``tolerance``)."""
    kinds = [PROBES[name][1] for name in names]
    if family_name == "hessian":
        family = HessianFamily(graph, kinds, settings.estimator, settings.noise_draws)
    else:
        family = FisherFamily(graph, kinds, family_name, settings.fisher_sampler, settings.noise_draws)
    targets: dict[Key, Target] = {}
    for name in names:
        kind = PROBES[name][1]
        targets |= {(name, layer): (kind, layer) for _, layer in graph.targets([kind])}
    saved = state.get(family_name)
    stats = RunningStats.from_state(saved) if saved else RunningStats(keys=list(targets))

    def after_sample(stats: RunningStats) -> None:
        if not any(stats.mean) and not any(stats.m2):
            raise _zero_traces(graph.task.name, family_name, stats.n)  # before the checkpoint: nothing to resume
        state[family_name] = stats.to_state()
        save()
        worst, where = stats.worst()
        spread = f", worst relative stderr {worst:.1%} ({where[0]} {where[1]})" if where else ""
        exact = sum(e > 0 for e in stats.exact)
        note = f", {exact} exact traces" if exact else ""
        report(stats.n, settings.max_samples, f"{family_name}: sample {stats.n}{note}{spread}")

    sizes = {key: graph.n_params[target] for key, target in targets.items()}
    outcome: dict[str, bool] = {}

    def decided(stats: RunningStats) -> bool:
        table = pd.DataFrame(_trace_rows(graph, stats, settings.tolerance, None), columns=SENSITIVITY_COLUMNS)
        table.attrs["samples"] = stats.n
        outcome["resolved"] = bool(decision(table))
        return outcome["resolved"]

    run_family(family, stats, targets, batches, settings, after_sample, sizes, decided)
    logger.info(
        "%s: %d exact traces, %d samples, %d HVPs, %d backward passes, %.1f s",
        family_name,
        len(stats.keys) - len(stats.sampled()),
        stats.n,
        stats.hvps,
        stats.backwards,
        stats.seconds,
    )
    if settings.stop != "decision":
        return stats, None
    return stats, outcome.get("resolved", not stats.sampled())


def _zero_traces(task_name: str, family: str, n: int) -> ProbeError:
    """Every trace of a family exactly 0: the probe cannot rank layers, so the search must not run."""
    if family == "efisher":
        return ProbeError(
            f"task {task_name}: every efisher trace is exactly 0 after {n} sample(s): the loss's gradient vanishes on "
            "the calibration data (a self-distillation loss at its own teacher does), so the empirical Fisher "
            "is 0; probe with hessian_* or fisher_*, which measure curvature."
        )
    return ProbeError(
        f"task {task_name}: every {family} trace is exactly 0 after {n} sample(s): the loss does not depend on the "
        "model's weights, or is linear in the model's output; use a loss with curvature in the output (cross-entropy, "
        "MSE) or the measured probe."
    )


def check_loss(task: Task, layer_table: pd.DataFrame, settings: ProbeSettings) -> None:
    """Fail in about one pass when the loss of calibration batch 0 does not depend on the weights.

    A loss depends on a weight when its gradient or its curvature there is not 0; the gradient
    alone would reject a self-distillation loss, whose gradient vanishes at the float weights.

    The trace probes need the gradient; ``measured`` alone runs without one, and fails on its
    own when no quantized layer changes the loss.

    Raises:
        ProbeError: no gradient at all, or the gradient and one Hessian draw of every layer's
            weight are exactly 0.
    """
    if "measured" in settings.probes and len(settings.probes) == 1:
        return
    with _eval_mode(task.model):
        graph = LayerGraph(task, layer_table)
        batch = calibration_batches([task.calibration[0]], settings.micro_batch_size)[0]
        run = graph.run(batch, ["w"])
        if any(bool(g.any()) for g in gradients(run.loss, run, retain_graph=False)):
            return
        family = HessianFamily(graph, ["w"], settings.estimator)  # one draw: only exact zeros matter
        if not any(family.draw(batch, sample_generator(settings.seed, "check", 0)).values()):
            raise LossIndependentError(
                f"task {task.name}: the loss of calibration batch 0 does not depend on the model's weights (its "
                "gradient and curvature are exactly 0 for every layer); compute loss_fn from the model's output."
            )


def _trace_rows(graph: LayerGraph, stats: RunningStats, tolerance: float, resolved: bool | None) -> list[dict]:
    """The family's rows; ``converged``: within the tolerance, or under the decision rule (``resolved``
    not None) whether the decision was resolved (an exact trace always is)."""
    rows = []
    for i, (name, layer) in enumerate(stats.keys):
        rows.append(
            {
                "layer": layer,
                "probe": name,
                "candidate": None,
                "value": stats.mean[i],
                "stderr": stats.stderr(i),
                "n_samples": stats.exact[i] if stats.exact[i] > 0 else stats.n,
                "n_params": graph.n_params[(PROBES[name][1], layer)],
                "converged": (
                    stats.relative_stderr(i) <= tolerance if resolved is None else resolved or stats.exact[i] > 0
                ),
                "hvps": stats.hvps,
                "backwards": stats.backwards,
                "seconds": stats.seconds,
            }
        )
    return rows


def _measured_rows(graph: LayerGraph, state: dict, n_samples: int) -> list[dict]:
    return [
        {
            "layer": layer,
            "probe": "measured",
            "candidate": candidate,
            "value": value,
            "stderr": stderr,
            "n_samples": n_samples,
            "n_params": graph.n_params[("w", layer)],
            "converged": True,
            "hvps": 0,
            "backwards": 0,
            "seconds": state["seconds"],
        }
        for layer, candidate, value, stderr in state["pairs"]
    ]


def _warn_about(stats: RunningStats, family: str, settings: ProbeSettings, resolved: bool | None) -> None:
    """SensitivityWarnings for negative estimates, and for layers above the tolerance or a decision
    left unresolved at the sample cap."""
    negative = [f"{name} {layer} ({mean:.3g})" for (name, layer), mean in zip(stats.keys, stats.mean) if mean < 0]
    if negative:
        mpq_warn(
            f"negative trace estimates: {', '.join(negative)}; they are reported as they are (a saddle or an "
            "untrained layer, or noise within the stderr), and mpq.omega counts them as 0.",
            SensitivityWarning,
        )
    if resolved is False:
        mpq_warn(
            f"{family}: after {stats.n} samples (the cap) the frontier still moves by more than "
            f"{settings.tolerance:.0%} of its predicted loss within the estimator's error; raise max_samples.",
            SensitivityWarning,
        )
        return
    loose = stats.unconverged(settings.tolerance) if resolved is None else []
    if loose:
        worst, where = stats.worst()
        mpq_warn(
            f"{family}: {len(loose)} estimates above the {settings.tolerance:.0%} relative standard error after "
            f"{stats.n} samples (worst {worst:.0%}, {where[0]} {where[1]}); raise max_samples or read the "
            "stderr column.",
            SensitivityWarning,
        )


@contextlib.contextmanager
def _eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Run the model in eval mode (no dropout, frozen batch norm), then restore every module's mode."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def task_probes(task: Task) -> tuple[str, ...]:
    """The probes a search or probe of ``task`` takes when the caller names none: the task's
    ``default_probes``, else the Hessian traces."""
    return tuple(task.default_probes) or ProbeSettings.probes


def fit_estimator(task: Task, settings: ProbeSettings) -> ProbeSettings:
    """Settings whose Hessian estimator runs on the task's output: ``split`` factors the output
    Hessian per sample, as an m x m matrix up to ``MAX_OUTPUT_ELEMS`` elements, and beyond that
    only for a softmax cross-entropy over the last dimension (a language model's next-token loss,
    verified on the first batch); any other task with a larger output samples its Hessian probes
    with ``hutchinson`` (the settings the run records and keys its probe with)."""
    if settings.estimator != "split" or not any(p.startswith("hessian") for p in settings.probes):
        return settings
    inputs, targets = task.calibration[0]
    with torch.no_grad():
        output = run_model(task.model, inputs)
    if not isinstance(output, torch.Tensor) or output.dim() < 2 or output[0].numel() <= MAX_OUTPUT_ELEMS:
        return settings
    if output.is_floating_point() and is_softmax_cross_entropy(task.loss_fn, output, targets):
        return settings
    return dataclasses.replace(settings, estimator="hutchinson")
