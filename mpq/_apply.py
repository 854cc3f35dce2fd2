"""``apply(model, assignment)``: a fake-quantized copy of a model, and activation calibration."""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from numbers import Real

import torch
from torch import nn

from mpq._formats import Candidate, NumberFormat, get_candidate
from mpq._layers import layer_kind
from mpq._task import hooked, run_model
from mpq._validation import unknown_name
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
    if isinstance(layer_names, str) or not isinstance(layer_names, Iterable | None):
        raise InvalidParameterError(
            f"The 'layer_names' parameter of activation_ranges must be a list of layer names or None. "
            f"Got {layer_names!r} instead."
        )
    modules = dict(model.named_modules())
    if layer_names is None:
        names = [n for n, m in modules.items() if layer_kind(m) not in (None, "embedding")]
    else:
        names = [_quantizable_layer(modules, n) for n in layer_names]
        embeddings = [n for n in names if layer_kind(modules[n]) == "embedding"]
        if embeddings:
            raise InvalidParameterError(
                f"activation_ranges: {', '.join(embeddings)} is an Embedding, whose inputs are indices "
                "with no range; leave it out of layer_names."
            )
    amax: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(module: nn.Module, args: tuple) -> None:
            seen = args[0].detach().abs().amax()
            amax[name] = torch.maximum(amax[name], seen) if name in amax else seen

        return hook

    handles = [modules[name].register_forward_pre_hook(record(name)) for name in names]
    n_batches = 0
    with hooked(handles):
        for batch in calibration:
            if not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise InvalidParameterError(
                    f"calibration batch {n_batches}: expected an (inputs, targets) pair, got "
                    f"{type(batch).__name__}; pass batches as Task.calibration holds them."
                )
            run_model(model, batch[0])
            n_batches += 1
    if n_batches == 0:
        raise InvalidParameterError(
            "activation_ranges: calibration has no batches; pass at least one (inputs, targets) batch."
        )
    logger.debug("activation ranges of %d layers over %d batches", len(amax), n_batches)
    return {name: float(value) for name, value in amax.items()}


@dataclass(frozen=True)
class InputQuantizer:
    """Forward pre-hook that fake-quantizes a layer's first input (None ``amax``: from the data)."""

    fmt: NumberFormat
    amax: float | None

    def __call__(self, module: nn.Module, args: tuple) -> tuple:
        return (self.fmt.quantize(args[0], self.amax), *args[1:])


def apply(
    model: nn.Module,
    assignment: Mapping[str, str | Candidate],
    *,
    calibration: Iterable | None = None,
    act_ranges: Mapping[str, float] | None = None,
) -> nn.Module:
    """A copy of the model with each assigned layer fake-quantized, to evaluate a configuration.

    In the copy, each assigned layer's weight is replaced, once, by its fake-quantized value
    (its own parameter: tied weights are untied), and its input is fake-quantized on every
    forward by a forward pre-hook (:class:`InputQuantizer`). Activation formats with a static
    scale (per-tensor INT and FP, NVFP4) use the layer's calibrated input range; group and
    block formats scale from the data; fp16/bf16 cast. Embedding layers quantize only their
    weight (their inputs are indices). Biases and unassigned layers stay float. The copy is in
    eval mode with ``requires_grad`` off; the original model is untouched.

    Args:
        model: The float model.
        assignment: ``{layer name: candidate}``, candidates as names (``w4a8``) or
            Candidates; layer names as in ``model.named_modules()``.
        calibration: Batches ``(inputs, targets)`` to measure input ranges on (see
            :func:`activation_ranges`); used for layers ``act_ranges`` does not cover.
        act_ranges: ``{layer name: max |input|}``, e.g. from :func:`activation_ranges`.

    Returns:
        The fake-quantized copy.

    Raises:
        InvalidParameterError: ``model``, ``assignment``, ``calibration`` or ``act_ranges``
            has the wrong type, a layer is not quantizable, a candidate is malformed, an
            ``act_ranges`` value is not a finite number >= 0, or a layer needs an input range
            that neither ``act_ranges`` nor ``calibration`` gives.
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
    modules = dict(model.named_modules())
    plan = {_quantizable_layer(modules, layer): get_candidate(c) for layer, c in assignment.items()}
    quantizes_input = {layer: layer_kind(modules[layer]) != "embedding" for layer in plan}
    needs_range = [layer for layer, c in plan.items() if quantizes_input[layer] and c.act_format.uses_range]
    ranges = _input_ranges(model, needs_range, calibration, act_ranges)

    quantized = copy.deepcopy(model).eval().requires_grad_(False)
    copies = dict(quantized.named_modules())
    with torch.no_grad():
        for layer, candidate in plan.items():
            module = copies[layer]
            module.weight = nn.Parameter(candidate.weight_format.quantize(module.weight), requires_grad=False)
            if quantizes_input[layer]:
                module.register_forward_pre_hook(InputQuantizer(candidate.act_format, ranges.get(layer)))
            logger.debug("layer %s: %s", layer, candidate.name)
    return quantized


def _input_ranges(
    model: nn.Module, layers: list[str], calibration: Iterable | None, act_ranges: Mapping[str, float] | None
) -> dict[str, float]:
    """The input range of every layer in ``layers``: from ``act_ranges``, else measured."""
    if act_ranges is not None and not isinstance(act_ranges, Mapping):
        raise InvalidParameterError(
            f"The 'act_ranges' parameter of apply must be a mapping of layer name to float. "
            f"Got {type(act_ranges).__name__} instead."
        )
    given = act_ranges or {}
    ranges = {layer: given[layer] for layer in layers if layer in given}
    for layer, value in ranges.items():
        if not isinstance(value, Real) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise InvalidParameterError(
                f"act_ranges[{layer!r}]: must be a finite float >= 0, got {value!r}; pass max |input| of the layer."
            )
    missing = [layer for layer in layers if layer not in ranges]
    if missing and calibration is None:
        raise InvalidParameterError(
            f"apply: the activation formats of {', '.join(missing)} need a calibrated input range; "
            "pass calibration=task.calibration (or act_ranges=mpq.activation_ranges(model, calibration))."
        )
    if missing:
        ranges |= activation_ranges(model, calibration, missing)
    not_run = [layer for layer in missing if layer not in ranges]
    if not_run:
        raise InvalidParameterError(
            f"apply: {', '.join(not_run)} did not run on the calibration batches, so its input range is "
            "unknown; assign it a candidate with a group, block or fp16 activation format, or leave it out."
        )
    return ranges


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
