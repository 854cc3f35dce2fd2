"""``apply(model, assignment)``: a fake-quantized copy of a model; ``calibrate``, the quantizer it uses."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Mapping
from numbers import Real

import torch
from torch import nn

from mpq._formats import Candidate, get_candidate
from mpq._layers import layer_kind
from mpq._param_checks import unknown_name
from mpq._quantizer import (
    LEGACY_QUANTIZER,
    Calibration,
    InputStats,
    QuantizerSettings,
    check_quantizer,
    collect_inputs,
    run_calibration,
)
from mpq.exceptions import InvalidParameterError

logger = logging.getLogger("mpq.apply")


def activation_ranges(
    model: nn.Module, calibration: Iterable, layer_names: Iterable[str] | None = None
) -> dict[str, float]:
    """The largest |input| each quantizable layer sees on the calibration batches.

    The model runs once per batch, as it is (put it in eval mode first), under
    ``torch.no_grad``, with forward pre-hooks on the layers.

    Args:
        model: The float model.
        calibration: Batches ``(inputs, targets)``, such as ``Task.calibration``; inputs are
            run as ``model(inputs)`` (``model(**inputs)`` for a dict, ``model(*inputs)`` for a
            tuple).
        layer_names: The Linear/Conv layers to measure; None measures every Linear, Conv1d and
            Conv2d layer. Embedding layers take indices, which have no range, so they are not
            measured.

    Returns:
        ``{layer: max |input|}`` over every batch and call; a layer that did not run is absent.

    Raises:
        InvalidParameterError: ``model`` is not a module, ``calibration`` is not an iterable of
            ``(inputs, targets)`` pairs or is empty, ``layer_names`` is not a list of names, or
            a named layer is not quantizable or is an Embedding.
        UnknownNameError: a layer name the model does not have.
    """
    _check_model("activation_ranges", model)
    _check_calibration("activation_ranges", calibration)
    modules = dict(model.named_modules())
    names = _measured_layers("activation_ranges", modules, layer_names, embeddings=False)
    amax: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            seen = args[0].detach().abs().amax()
            amax[name] = torch.maximum(amax[name], seen) if name in amax else seen

        return hook

    n_batches = run_calibration(model, calibration, {n: modules[n].register_forward_pre_hook(record(n)) for n in names})
    logger.debug("activation ranges of %d layers over %d batches", len(amax), n_batches)
    return {name: float(value) for name, value in amax.items()}


def calibrate(
    model: nn.Module,
    calibration: Iterable,
    layer_names: Iterable[str] | None = None,
    *,
    quantizer: QuantizerSettings | None = None,
) -> Calibration:
    """Calibrate the quantizer on a model's inputs: every layer's input range, histogram and mean.

    The model runs once per batch (twice for the ``mse`` and ``percentile`` methods, whose
    histograms span the range the first pass found), as it is (eval mode first), under
    ``torch.no_grad``.

    Args:
        model: The float model.
        calibration: Batches ``(inputs, targets)``, such as ``Task.calibration``.
        layer_names: The layers to calibrate; None: every Linear, Conv1d, Conv2d and Embedding.
        quantizer: The settings (default ``QuantizerSettings()``: mse ranges, bias correction,
            asymmetric inputs).

    Returns:
        The calibrated quantizer, to pass to :func:`apply` (``act_ranges=``), :func:`mpq.validate`
        and :func:`mpq.omega`.

    Raises:
        InvalidParameterError: a bad argument, a calibration batch that is not an
            ``(inputs, targets)`` pair, or no batch at all.
        UnknownNameError: a layer name the model does not have.

    Example:
        >>> import mpq
        >>> task = mpq.load_task("example:digits-cnn")
        >>> quantizer = mpq.calibrate(task.model, task.calibration)
        >>> quantizer.input_quantizer("conv2", mpq.get_format("int4")).unsigned  # after a ReLU
        True
    """
    _check_model("calibrate", model)
    _check_calibration("calibrate", calibration)
    settings = check_quantizer("calibrate", QuantizerSettings() if quantizer is None else quantizer)
    modules = dict(model.named_modules())
    names = _measured_layers("calibrate", modules, layer_names, embeddings=True)
    kinds = {name: layer_kind(modules[name]) for name in names}
    return Calibration(settings, collect_inputs(model, calibration, names, settings, kinds))


def apply(
    model: nn.Module,
    assignment: Mapping[str, str | Candidate],
    *,
    calibration: Iterable | None = None,
    act_ranges: Calibration | Mapping[str, float] | None = None,
    quantizer: QuantizerSettings | None = None,
) -> nn.Module:
    """A copy of the model with each assigned layer fake-quantized, to evaluate a configuration.

    In the copy, each assigned layer's weight is replaced, once, by its fake-quantized value
    (its own parameter: tied weights are untied), its bias corrected for the mean shift that
    causes (bias correction; a layer without a bias gets one), and its input is fake-quantized
    on every forward by a forward pre-hook (:class:`mpq._quantizer.InputQuantizer`), all by
    the calibrated quantizer (:mod:`mpq._quantizer`): INT inputs on a calibrated unsigned or
    zero-pointed grid, weights clipped by the range method. Group and block activation formats
    scale from the data; fp16/bf16 cast. Embedding layers quantize only their weight (their
    inputs are indices). Unassigned layers stay float. The copy is in eval mode with
    ``requires_grad`` off; the original model is untouched.

    Args:
        model: The float model.
        assignment: ``{layer name: candidate}``, candidates as names (``w4a8``) or
            Candidates; layer names as in ``model.named_modules()``.
        calibration: Batches ``(inputs, targets)`` to calibrate the quantizer on (see
            :func:`calibrate`), when ``act_ranges`` is not given.
        act_ranges: A calibrated quantizer from :func:`calibrate` (preferred: calibrate once,
            apply many times); or ``{layer: max |input|}`` from :func:`activation_ranges`, which
            quantizes as mpq's first quantizer did (``LEGACY_QUANTIZER``: symmetric max-abs
            grids, no bias correction), missing layers measured on ``calibration``.
        quantizer: Settings to calibrate ``calibration`` with (default ``QuantizerSettings()``;
            without calibration data there is no mean to correct, so bias correction is off).
            Not with ``act_ranges``, which carries its own.

    Returns:
        The fake-quantized copy.

    Raises:
        InvalidParameterError: ``model``, ``assignment``, ``calibration``, ``act_ranges`` or
            ``quantizer`` has the wrong type, a layer is not quantizable, a candidate is
            malformed, an ``act_ranges`` value is not a finite number >= 0, or a layer needs an
            input range that neither ``act_ranges`` nor ``calibration`` gives.
        UnknownNameError: a layer the model does not have, or a candidate with an unknown
            format.
    """
    _check_model("apply", model)
    if calibration is not None:
        _check_calibration("apply", calibration)
    if not isinstance(assignment, Mapping):
        raise InvalidParameterError(
            f"The 'assignment' parameter of apply must be a mapping of layer name to candidate. "
            f"Got {type(assignment).__name__} instead."
        )
    if quantizer is not None:
        check_quantizer("apply", quantizer)
    modules = dict(model.named_modules())
    plan = {_quantizable_layer(modules, layer): get_candidate(c) for layer, c in assignment.items()}
    quantizes_input = {layer: layer_kind(modules[layer]) != "embedding" for layer in plan}
    needs_range = [layer for layer, c in plan.items() if quantizes_input[layer] and c.act_format.uses_range]
    calibrated = _calibration(model, plan, needs_range, calibration, act_ranges, quantizer)

    quantized = copy.deepcopy(model).eval().requires_grad_(False)
    copies = dict(quantized.named_modules())
    with torch.no_grad():
        for layer, candidate in plan.items():
            module = copies[layer]
            weight = calibrated.quantize_weight(layer, candidate.weight_format, module.weight)
            shift = (
                calibrated.bias_shift(layer, module, candidate.weight_format, weight)
                if quantizes_input[layer]
                else None
            )
            module.weight = nn.Parameter(weight, requires_grad=False)
            if shift is not None:
                bias = torch.zeros_like(shift) if module.bias is None else module.bias
                module.bias = nn.Parameter(bias - shift, requires_grad=False)
            if quantizes_input[layer]:
                module.register_forward_pre_hook(calibrated.input_quantizer(layer, candidate.act_format))
            logger.debug("layer %s: %s", layer, candidate.name)
    return quantized


def _calibration(
    model: nn.Module,
    plan: Mapping[str, Candidate],
    needs_range: list[str],
    calibration: Iterable | None,
    act_ranges: Calibration | Mapping[str, float] | None,
    quantizer: QuantizerSettings | None,
) -> Calibration:
    """The calibrated quantizer ``apply`` uses: ``act_ranges`` as given, else calibrated here."""
    if isinstance(act_ranges, Calibration):
        if quantizer is not None:
            raise InvalidParameterError(
                "apply: act_ranges from mpq.calibrate carries its quantizer settings; pass quantizer= to "
                "mpq.calibrate instead, not to apply."
            )
        return act_ranges
    if act_ranges is not None:
        return _legacy_calibration(model, needs_range, calibration, act_ranges)
    if calibration is None:
        if needs_range:
            raise InvalidParameterError(
                f"apply: the activation formats of {', '.join(needs_range)} need a calibrated input range; "
                "pass calibration=task.calibration (or act_ranges=mpq.calibrate(model, calibration))."
            )
        settings = QuantizerSettings(bias_correction=False) if quantizer is None else quantizer
        return Calibration(check_quantizer("apply", settings), {})
    return calibrate(model, calibration, list(plan), quantizer=quantizer)


def _legacy_calibration(
    model: nn.Module, layers: list[str], calibration: Iterable | None, act_ranges: Mapping[str, float]
) -> Calibration:
    """A calibration of mpq's first quantizer from ``{layer: max |input|}`` (missing ones measured)."""
    if not isinstance(act_ranges, Mapping):
        raise InvalidParameterError(
            f"The 'act_ranges' parameter of apply must be an mpq.calibrate result or a mapping of layer name to "
            f"float. Got {type(act_ranges).__name__} instead."
        )
    ranges = {layer: act_ranges[layer] for layer in layers if layer in act_ranges}
    for layer, value in ranges.items():
        if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise InvalidParameterError(
                f"act_ranges[{layer!r}]: must be a finite float >= 0, got {value!r}; pass max |input| of the layer."
            )
    missing = [layer for layer in layers if layer not in ranges]
    if missing and calibration is None:
        raise InvalidParameterError(
            f"apply: the activation formats of {', '.join(missing)} need a calibrated input range; "
            "pass calibration=task.calibration (or act_ranges=mpq.calibrate(model, calibration))."
        )
    if missing:
        ranges |= activation_ranges(model, calibration, missing)
    inputs = {layer: InputStats(-float(value), float(value)) for layer, value in ranges.items()}
    return Calibration(LEGACY_QUANTIZER, inputs)


def _measured_layers(func: str, modules: dict[str, nn.Module], layer_names: object, embeddings: bool) -> list[str]:
    """The quantizable layers to measure: ``layer_names`` checked, or all (Embeddings if ``embeddings``)."""
    if isinstance(layer_names, str) or not isinstance(layer_names, Iterable | None):
        raise InvalidParameterError(
            f"The 'layer_names' parameter of {func} must be a list of layer names or None. Got {layer_names!r} instead."
        )
    if layer_names is None:
        return [
            n for n, m in modules.items() if layer_kind(m) is not None and (embeddings or layer_kind(m) != "embedding")
        ]
    names = [_quantizable_layer(modules, n) for n in layer_names]
    refused = [n for n in names if layer_kind(modules[n]) == "embedding"] if not embeddings else []
    if refused:
        raise InvalidParameterError(
            f"{func}: {', '.join(refused)} is an Embedding, whose inputs are indices with no range; leave it out "
            "of layer_names."
        )
    return names


def _check_model(func: str, model: object) -> None:
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"The 'model' parameter of {func} must be a torch.nn.Module. Got {type(model).__name__} instead."
        )


def _check_calibration(func: str, calibration: object) -> None:
    if isinstance(calibration, (str, torch.Tensor)) or not isinstance(calibration, Iterable):
        raise InvalidParameterError(
            f"The 'calibration' parameter of {func} must be a list of (inputs, targets) batches. "
            f"Got {type(calibration).__name__} instead."
        )


def _quantizable_layer(modules: dict[str, nn.Module], name: object) -> str:
    """``name`` itself when it names a quantizable layer of the model; one-line errors otherwise."""
    if name not in modules:
        known = [n for n, m in modules.items() if layer_kind(m) is not None]
        raise unknown_name("layer", str(name), known)
    if layer_kind(modules[name]) is None:
        raise InvalidParameterError(
            f"layer {name!r}: a {type(modules[name]).__name__} is not quantizable; assign only Linear, "
            "Conv1d, Conv2d or Embedding layers (see mpq.layers(model, example_input))."
        )
    return name
