"""The ``measured`` probe: the real loss increase when one layer at a time is quantized.

For every (layer, candidate) pair, :func:`mpq.apply` quantizes that layer alone (weights, and
inputs with ranges calibrated once on the calibration batches) and the calibration loss is
measured again: ``value = L(quantized) - L(float)``, ``L`` the sample-weighted mean of the batch
losses (the loss the trace probes differentiate). It is the ground truth the trace probes
predict, at the price of ``layers x candidates`` passes over the calibration data. Its standard
error is that of the paired per-batch differences (NaN with a single batch).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch

from mpq._apply import apply, calibrate
from mpq._executors import Runner, prepared
from mpq._probes.graph import Batch, LayerGraph, calibration_batches
from mpq._quantizer import QuantizerSettings
from mpq._task import Task, run_model


def calibration_losses(model: torch.nn.Module, loss_fn, batches: list[Batch]) -> list[float]:
    """The loss of every batch, without gradients."""
    with torch.no_grad():
        return [float(loss_fn(run_model(model, b.inputs), b.targets)) for b in batches]


def weighted_mean_and_stderr(values: list[float], weights: list[float]) -> tuple[float, float]:
    """Weighted mean (weights summing to 1) and its standard error (NaN for one value)."""
    mean = sum(w * v for w, v in zip(weights, values))
    n = len(values)
    if n < 2:
        return mean, math.nan
    spread = sum(w * w * (v - mean) ** 2 for w, v in zip(weights, values))
    return mean, math.sqrt(n / (n - 1) * spread)


def run_measured(
    graph: LayerGraph,
    micro_batch_size: int | None,
    candidates: tuple[str, ...],
    quantizer: QuantizerSettings,
    state: dict,
    after_pair: Callable[[int, int, str], None],
    runner: Runner,
) -> dict:
    """Measure every (layer, candidate) pair not yet in ``state``; call ``after_pair`` after each.

    Args:
        graph: The model's layer graph (its task and layers).
        micro_batch_size: The calibration batches' split (:func:`calibration_batches`).
        candidates: Candidate names.
        quantizer: The quantizer settings every pair is quantized with.
        state: ``{"pairs": [[layer, candidate, value, stderr], ...], "seconds": float}`` of the
            pairs already measured (empty to start); updated in place. ``seconds`` sums the
            pairs' compute time, wherever they ran.
        after_pair: ``after_pair(done, total, message)``, called once ``state`` holds the pair:
            saves it and reports progress; may raise to interrupt.
        runner: Where the pairs run: all of them are submitted at once, and taken in order.

    Returns:
        ``state``, every pair measured.
    """
    state.setdefault("pairs", [])
    state.setdefault("seconds", 0.0)
    done = {(layer, candidate) for layer, candidate, _, _ in state["pairs"]}
    todo = [(layer, c) for layer in graph.layers for c in candidates if (layer, c) not in done]
    total = len(graph.layers) * len(candidates)
    handles = [
        runner.submit(measure_pair, (micro_batch_size, quantizer, layer, c), f"measured probe pair {layer} at {c}")
        for layer, c in todo
    ]
    try:
        for (layer, candidate), handle in zip(todo, handles):
            value, stderr, seconds = handle.result()
            state["pairs"].append([layer, candidate, value, stderr])
            state["seconds"] += seconds
            after_pair(len(state["pairs"]), total, f"measured: {layer} at {candidate}: loss {value:+.4g}")
    finally:
        for handle in handles:
            handle.cancel()  # interrupted: the pairs not started yet do not run
    return state


def measure_pair(
    task: Task, memo: dict, micro_batch_size: int | None, quantizer: QuantizerSettings, layer: str, candidate: str
) -> tuple[float, float, float]:
    """The loss increase of ``layer`` alone at ``candidate``, its standard error, and the seconds
    it took (the float losses and the calibrated quantizer, computed once per process, included)."""
    start = time.perf_counter()

    def prepare() -> tuple:
        batches = calibration_batches(task.calibration, micro_batch_size)
        base = calibration_losses(task.model, task.loss_fn, batches)
        return batches, base, calibrate(task.model, task.calibration, quantizer=quantizer)

    batches, base, ranges = prepared(memo, ("measured", micro_batch_size, quantizer), prepare)
    quantized = apply(task.model, {layer: candidate}, act_ranges=ranges)
    losses = calibration_losses(quantized, task.loss_fn, batches)
    value, stderr = weighted_mean_and_stderr([q - b for q, b in zip(losses, base)], [b.weight for b in batches])
    return value, stderr, time.perf_counter() - start
