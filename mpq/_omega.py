"""``omega(task, sensitivity, candidates)``: the predicted loss increase of every layer at every candidate.

HAWQ-V2/V3 and FIT's perturbation model, with the real quantizer of each format: quantizing a
layer's weight ``W`` and input ``A`` adds errors ``dW = Q(W) - W`` and ``dA = Q(A) - A``, and to
second order around the float model the loss grows by ``1/2 dW^T H_W dW + 1/2 dA^T H_A dA``.
Quantization error is spread over the elements and nearly uncorrelated with the curvature's
eigenvectors, so ``dW^T H_W dW ~ tr(H_W) / n_W * ||dW||^2``, which gives::

    omega = 1/2 * (trace_w / n_w * weight_sq_err + trace_a / n_a * act_sq_err)

``trace_w`` and ``trace_a`` are a probe's traces (``hessian_w``/``hessian_a``, or the Fisher
pair, which estimates the same curvature), ``n_w`` the weight's elements, ``n_a`` the input's
elements per sample, ``weight_sq_err = ||Q(W) - W||^2`` and ``act_sq_err = E_n ||Q(A_n) - A_n||^2``
per calibration sample, both by the calibrated quantizer :func:`mpq.apply` uses (:mod:`mpq._quantizer`:
clipped weights, unsigned or zero-pointed inputs, ranges calibrated on the same batches). INT,
FP and block formats therefore land on one scale: the loss's. Bias correction removes the mean
of the output error that ``dW`` causes; the trace model keeps ``||dW||^2`` whole (the mean is a
small part of it once weights are clipped by error).

The factor 1/2 is the Taylor coefficient: with it, omega predicts the measured increase itself
(DESIGN.md writes the formula without it; the factor changes no ranking and no solution). The
first-order term ``g . dW`` is left out, as in HAWQ and FIT: the gradient is small at a trained
model and zero for self-distillation, and rounding error is uncorrelated with it.

A negative trace (a saddle, an untrained layer, or noise around zero) predicts a loss *decrease*
for any format, which second order cannot be trusted for; omega counts it as 0 (the layer's
term costs nothing) and a SensitivityWarning names the layers. The sensitivity table keeps the
negative value.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import pandas as pd
import torch

from mpq._apply import calibrate
from mpq._formats import Candidate, get_candidate
from mpq._layers import LAYER_TABLE, layers
from mpq._param_checks import InstanceOf, OneOf, check_param
from mpq._probes.settings import check_task
from mpq._quantizer import Calibration
from mpq._task import Task, batch_size, hooked, run_model
from mpq._warnings import mpq_warn
from mpq.exceptions import InvalidParameterError, SensitivityWarning

logger = logging.getLogger("mpq.omega")

#: Second-order Taylor coefficient of the loss increase.
TAYLOR = 0.5

#: ``probe`` argument of omega -> (weight-trace probe, activation-trace probe).
TRACE_PAIRS = {
    "hessian": ("hessian_w", "hessian_a"),
    "fisher": ("fisher_w", "fisher_a"),
    "efisher": ("efisher_w", "efisher_a"),
}

OMEGA_COLUMNS = ["layer", "candidate", "omega", "weight_sq_err", "act_sq_err", "omega_w", "omega_a", "act_probe"]


def omega(
    task: Task,
    sensitivity: pd.DataFrame,
    candidates: Iterable[str | Candidate],
    probe: str = "hessian",
    *,
    layer_table: pd.DataFrame | None = None,
    quantizer: Calibration | None = None,
) -> pd.DataFrame:
    """Predict the loss increase of quantizing each layer alone to each candidate.

    Args:
        task: The task the sensitivity table was probed on.
        sensitivity: The table :func:`mpq.probe` returned.
        candidates: Candidate names (``w4a8``...) or Candidates.
        probe: Which traces to use: ``hessian`` (``hessian_w`` + ``hessian_a``), ``fisher``,
            ``efisher``, or ``measured`` (the measured increase itself, no prediction). If the
            table has no activation trace of that probe, the activation term is 0 (the
            ``act_probe`` column says so). Where the table also holds a ``measured`` row of a
            (layer, candidate) (the hybrid: ``ProbeSettings(probes=("hessian_w", "hessian_a",
            "measured"), candidates=(coarse ones))``), that measured increase is the omega:
            2- and 3-bit formats move a layer far outside the quadratic regime, where the trace
            misjudges it; ``omega_w``/``omega_a`` keep the quadratic terms.
        layer_table: The model's layer table (:func:`mpq.layers`), when the caller has it
            already; default: traced here.
        quantizer: The calibrated quantizer (:func:`mpq.calibrate`) whose errors enter omega;
            default: calibrated on ``task.calibration`` with ``QuantizerSettings()``.

    Returns:
        One row per (layer, candidate), layers in the order they run: ``layer``;
        ``candidate``; ``omega`` (predicted loss increase, loss units; for ``measured`` the
        measured one); ``weight_sq_err`` (``||Q(W) - W||^2``, squared weight units);
        ``act_sq_err`` (``E||Q(A) - A||^2`` per calibration sample, squared activation units; 0
        for embeddings, whose indices are not quantized); ``omega_w`` and ``omega_a`` (the
        weight and activation terms, loss units; NaN for ``measured``); ``act_probe`` (the
        probe behind ``omega_a``, or missing (NA) when the activation term is 0 for lack of one).

    Raises:
        InvalidParameterError: a bad argument, or the table lacks the rows ``probe`` needs
            (the message names the missing layers and the probe call that gives them).
        UnknownNameError: an unknown candidate or format.
    """
    check_task("omega", task)
    check_param("omega", "probe", probe, OneOf((*TRACE_PAIRS, "measured")))
    if isinstance(candidates, (str, Candidate)) or not isinstance(candidates, Iterable):
        raise InvalidParameterError(
            f"The 'candidates' parameter of omega must be a list of candidate names. Got {candidates!r} instead."
        )
    parsed = [get_candidate(c) for c in candidates]
    if not parsed:
        raise InvalidParameterError(
            "The 'candidates' parameter of omega must name at least one candidate. Got [] instead."
        )
    check_param("omega", "layer_table", layer_table, LAYER_TABLE)
    table = layers(task.model, task.calibration[0][0]) if layer_table is None else layer_table
    names = list(table["layer"])
    act_layers = [n for n, kind in zip(table["layer"], table["kind"]) if kind != "embedding"]
    values = _sensitivity_values(sensitivity)
    check_param("omega", "quantizer", quantizer, InstanceOf((Calibration,), "an mpq.calibrate result", optional=True))
    calibrated = calibrate(task.model, task.calibration) if quantizer is None else quantizer

    weight_err = weight_sq_errors(task.model, names, parsed, calibrated)
    act_err = act_sq_errors(task, act_layers, parsed, calibrated)
    rows = []
    if probe == "measured":
        measured = _require(values, "measured", [(n, c.name) for n in names for c in parsed], probe)
        for n in names:
            for c in parsed:
                rows.append(
                    _row(
                        n,
                        c.name,
                        measured[(n, c.name)],
                        weight_err[(n, c.name)],
                        act_err.get((n, c.name), 0.0),
                        float("nan"),
                        float("nan"),
                        None,
                    )
                )
        return pd.DataFrame(rows, columns=OMEGA_COLUMNS)

    w_probe, a_probe = TRACE_PAIRS[probe]
    trace_w = _require(values, w_probe, [(n, None) for n in names], probe)
    has_act = any(p == a_probe for p, _, _ in values)
    trace_a = _require(values, a_probe, [(n, None) for n in act_layers], probe) if has_act else {}
    if not has_act:
        logger.info("omega: no %s rows; the activation term is 0", a_probe)
    _warn_negative(
        {**{(w_probe, n): v for (n, _), v in trace_w.items()}, **{(a_probe, n): v for (n, _), v in trace_a.items()}}
    )
    # Where the table holds a measured increase (the hybrid probe: coarse formats, far outside
    # the quadratic regime), the measurement is omega; the quadratic terms stay for reference.
    measured = {(n, c): v for (p, n, c), v in values.items() if p == "measured"}
    n_w = dict(zip(table["layer"], table["weight_params"]))
    n_a = dict(zip(table["layer"], table["in_elems"]))
    for n in names:
        curvature_w = max(trace_w[(n, None)], 0.0) / n_w[n]
        curvature_a = max(trace_a[(n, None)], 0.0) / n_a[n] if (n, None) in trace_a else 0.0
        for c in parsed:
            omega_w = TAYLOR * curvature_w * weight_err[(n, c.name)]
            omega_a = TAYLOR * curvature_a * act_err.get((n, c.name), 0.0)
            rows.append(
                _row(
                    n,
                    c.name,
                    measured.get((n, c.name), omega_w + omega_a),
                    weight_err[(n, c.name)],
                    act_err.get((n, c.name), 0.0),
                    omega_w,
                    omega_a,
                    a_probe if (n, None) in trace_a else None,
                )
            )
    return pd.DataFrame(rows, columns=OMEGA_COLUMNS)


def _row(layer, candidate, value, w_err, a_err, omega_w, omega_a, act_probe) -> dict:
    return dict(
        zip(
            OMEGA_COLUMNS,
            (layer, candidate, float(value), float(w_err), float(a_err), float(omega_w), float(omega_a), act_probe),
        )
    )


def weight_sq_errors(
    model: torch.nn.Module, names: list[str], candidates: list[Candidate], calibrated: Calibration
) -> dict[tuple[str, str], float]:
    """``||Q(W) - W||^2`` of every layer at every candidate (each weight format quantized once)."""
    modules = dict(model.named_modules())
    formats = {c.weight_format.name: c.weight_format for c in candidates}
    out = {}
    with torch.no_grad():
        for name in names:
            weight = modules[name].weight
            by_format = {
                f: _sq_err(calibrated.quantize_weight(name, fmt, weight), weight) for f, fmt in formats.items()
            }
            out |= {(name, c.name): by_format[c.weight_format.name] for c in candidates}
    return out


def act_sq_errors(
    task: Task, names: list[str], candidates: list[Candidate], calibrated: Calibration
) -> dict[tuple[str, str], float]:
    """``E_n ||Q(A_n) - A_n||^2`` per calibration sample, every layer and candidate, by the
    input quantizers :func:`mpq.apply` hooks on (``calibrated.input_quantizer``)."""
    if not names:
        return {}
    formats = {c.act_format.name: c.act_format for c in candidates}
    quantizers = {(name, f): calibrated.input_quantizer(name, fmt) for name in names for f, fmt in formats.items()}
    sums = {(name, f): 0.0 for name in names for f in formats}
    modules = dict(task.model.named_modules())

    def hook(name: str):
        def record(module: torch.nn.Module, args: tuple) -> None:
            x = args[0].detach()
            for f in formats:
                sums[(name, f)] += _sq_err(quantizers[(name, f)].quantize(x), x)

        return record

    handles = [modules[name].register_forward_pre_hook(hook(name)) for name in names]
    n_samples = 0
    with hooked(handles):
        for inputs, _ in task.calibration:
            run_model(task.model, inputs)
            n_samples += batch_size(inputs)
    return {(name, c.name): sums[(name, c.act_format.name)] / n_samples for name in names for c in candidates}


def _sq_err(quantized: torch.Tensor, x: torch.Tensor) -> float:
    return float((quantized.double() - x.double()).pow(2).sum())


def _sensitivity_values(sensitivity: object) -> dict[tuple[str, str, str | None], float]:
    """``{(probe, layer, candidate): value}`` of a sensitivity table, after checking its columns."""
    required = ["layer", "probe", "value"]
    if not isinstance(sensitivity, pd.DataFrame) or any(c not in sensitivity.columns for c in required):
        got = list(sensitivity.columns) if isinstance(sensitivity, pd.DataFrame) else type(sensitivity).__name__
        raise InvalidParameterError(
            f"The 'sensitivity' parameter of omega must be the table mpq.probe returns (columns {', '.join(required)}, "
            f"candidate). Got {got} instead."
        )
    candidates = sensitivity["candidate"] if "candidate" in sensitivity.columns else [None] * len(sensitivity)
    out = {}
    columns = zip(sensitivity["probe"], sensitivity["layer"], candidates, sensitivity["value"])
    for probe, layer, candidate, value in columns:
        out[(probe, layer, None if pd.isna(candidate) else candidate)] = float(value)
    return out


def _require(values, probe_name: str, keys: list[tuple[str, str | None]], probe: str) -> dict:
    """The values of ``probe_name`` at every (layer, candidate) key; a one-line error if some are missing."""
    missing = [key for key in keys if (probe_name, *key) not in values]
    if missing:
        shown = ", ".join(k[0] if k[1] is None else f"{k[0]} at {k[1]}" for k in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        fix = (
            f"run mpq.probe(task, ['{probe_name}'], settings=ProbeSettings(candidates=...)) with these candidates"
            if probe_name == "measured"
            else f"run mpq.probe(task, ['{probe_name}', ...]) on this task"
        )
        raise InvalidParameterError(f"sensitivity: no {probe_name} value for {shown}{more}; {fix}.")
    return {key: values[(probe_name, *key)] for key in keys}


def _warn_negative(traces: dict[tuple[str, str], float]) -> None:
    negative = [f"{probe} {layer} ({value:.3g})" for (probe, layer), value in traces.items() if value < 0]
    if negative:
        mpq_warn(
            f"negative traces counted as 0 in omega: {', '.join(negative)}; the quadratic model predicts no "
            "increase there (check their stderr in the sensitivity table).",
            SensitivityWarning,
        )
