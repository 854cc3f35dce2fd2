"""Layer discovery: run the model once with hooks and describe every quantizable layer."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd
import torch
from torch import nn

from mpq._task import Inputs, batch_size, hooked, run_model
from mpq.exceptions import InvalidParameterError, NoQuantizableLayerError, TaskSpecError
from mpqvocab import LAYER_COLUMNS, InstanceOf

#: Module types mpq quantizes, and the ``kind`` each gets in the layer table.
QUANTIZABLE_KINDS: dict[type[nn.Module], str] = {
    nn.Linear: "linear",
    nn.Conv1d: "conv1d",
    nn.Conv2d: "conv2d",
    nn.Embedding: "embedding",
}


def layer_kind(module: nn.Module) -> str | None:
    """The layer-table ``kind`` of a module, or None when mpq does not quantize it."""
    return QUANTIZABLE_KINDS.get(type(module))


def _macs_per_output(module: nn.Module) -> int:
    if isinstance(module, nn.Linear):
        return module.in_features
    if isinstance(module, (nn.Conv1d, nn.Conv2d)):
        return module.in_channels // module.groups * math.prod(module.kernel_size)
    return 0  # an embedding is a lookup


def _holds_a_tensor(inputs: Any) -> bool:
    """Whether ``inputs`` has the tensor :func:`mpq._task.batch_size` reads the batch size from."""
    if isinstance(inputs, Mapping):
        inputs = next(iter(inputs.values()), None)
    if isinstance(inputs, (tuple, list)):
        inputs = inputs[0] if inputs else None
    return isinstance(inputs, torch.Tensor)


#: What a ``layer_table`` parameter takes: the table :func:`layers` returns, or None to trace it.
LAYER_TABLE = InstanceOf((pd.DataFrame,), "the layer table mpq.layers returns", optional=True)


def check_example_input(func: str, example_input: object) -> None:
    """One batch of inputs as a task passes it: a tensor, a tuple or list starting with one, or a dict."""
    if not _holds_a_tensor(example_input):
        raise InvalidParameterError(
            f"The 'example_input' parameter of {func} must be a tensor, a tuple or list starting with one, or a "
            f"dict of them (one batch, as the task passes it). Got {type(example_input).__name__} instead."
        )


def check_model_and_input(func: str, model: object, example_input: object) -> None:
    """A torch module and one batch of its inputs, as :func:`layers` and :func:`fused_sets` take them."""
    if not isinstance(model, nn.Module):
        raise InvalidParameterError(
            f"The 'model' parameter of {func} must be a torch.nn.Module. Got {type(model).__name__} instead."
        )
    check_example_input(func, example_input)


def layers(model: nn.Module, example_input: Inputs) -> pd.DataFrame:
    """Describe every Linear, Conv1d, Conv2d and Embedding layer that runs on an example input.

    The model runs once, under ``torch.no_grad``, with forward hooks: layers that exist but do
    not run (a pooler under mean pooling) are left out, and a layer called several times counts
    every call.

    Args:
        model: The model.
        example_input: One batch of inputs, as the task passes them (tensor, tuple or dict).

    Returns:
        One row per layer, in the order the layers first ran:
        ``layer`` (module path), ``kind`` (linear, conv1d, conv2d, embedding),
        ``weight_params`` and ``bias_params`` (counts), ``macs`` (multiply-accumulates per
        sample), ``in_elems`` and ``out_elems`` (activation elements per sample),
        ``weight_shape`` (tuple), ``groups`` (1 unless a grouped convolution).

    Raises:
        InvalidParameterError: ``model`` is not a torch.nn.Module, or ``example_input`` holds no tensor.
        NoQuantizableLayerError: no quantizable layer ran.
        TaskSpecError: the model raised on the example input (wrong shape or type).
    """
    check_model_and_input("layers", model, example_input)
    n = batch_size(example_input)
    rows: dict[str, dict] = {}

    def per_sample(tensor: torch.Tensor) -> int:
        # A tensor broadcast over the batch (BERT's position ids, shape (1, T)) is per sample already.
        return tensor.numel() // n if tensor.dim() and tensor.shape[0] == n else tensor.numel()

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            out_elems = per_sample(output)
            row = rows.get(name)
            if row is None:
                rows[name] = {
                    "layer": name,
                    "kind": layer_kind(module),
                    "weight_params": module.weight.numel(),
                    "bias_params": 0 if getattr(module, "bias", None) is None else module.bias.numel(),
                    "macs": out_elems * _macs_per_output(module),
                    "in_elems": per_sample(args[0]),
                    "out_elems": out_elems,
                    "weight_shape": tuple(module.weight.shape),
                    "groups": getattr(module, "groups", 1),
                }
            else:  # called again in the same forward (a shared block): every call costs
                row["macs"] += out_elems * _macs_per_output(module)
                row["in_elems"] += per_sample(args[0])
                row["out_elems"] += out_elems

        return record

    handles = [
        module.register_forward_hook(hook(name))
        for name, module in model.named_modules()
        if layer_kind(module) is not None
    ]
    with hooked(handles):
        try:
            run_model(model, example_input)
        except Exception as exc:  # the user's model on the user's data: one line, not a traceback
            reason = str(exc).splitlines()[0] if str(exc) else ""
            raise TaskSpecError(
                f"{type(model).__name__}: running it on the example input raised {type(exc).__name__}: {reason}; "
                "check that the calibration inputs have the shape and type the model expects."
            ) from exc
    if not rows:
        raise NoQuantizableLayerError(
            f"{type(model).__name__}: no Linear, Conv1d, Conv2d or Embedding layer ran on the example "
            "input; mpq quantizes only those layer types."
        )
    return pd.DataFrame(list(rows.values()), columns=LAYER_COLUMNS)


def fused_sets(model: nn.Module, example_input: Inputs) -> tuple[tuple[str, ...], ...]:
    """The fused sets of a model: its Linear layers of one parent module that read the very same
    input tensor (q/k/v of an attention block, gate/up of a SwiGLU MLP), which a serving engine
    such as vLLM runs as one matmul with one format.

    mpq's one notion of them: ``hf:`` tasks set ``Task.fused`` to these (a task of your own can
    too: ``Task(..., fused=mpq.fused_sets(model, example_input))``), the search keeps each at one
    format unless ``fuse=False``, the run records them (:attr:`mpq.Run.fused`), and the
    compressed-tensors export refuses a point that splits one.

    Args:
        model: The model; it runs once, under ``torch.no_grad``.
        example_input: One batch of inputs, as the task passes them (tensor, tuple or dict).

    Returns:
        The sets, each a tuple of layer names in the order they ran (empty when none).

    Raises:
        InvalidParameterError: ``model`` is not a torch.nn.Module, or ``example_input`` holds no tensor.
    """
    check_model_and_input("fused_sets", model, example_input)
    readers: dict[tuple[str, int], list[str]] = {}
    inputs: list[torch.Tensor] = []  # kept alive, so that no two inputs share an id

    def hook(name: str):
        def record(module: nn.Module, args: tuple) -> None:
            inputs.append(args[0])
            readers.setdefault((name.rpartition(".")[0], id(args[0])), []).append(name)

        return record

    handles = [
        module.register_forward_pre_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear)
    ]
    with hooked(handles), torch.no_grad():
        run_model(model, example_input)
    return tuple(tuple(names) for names in readers.values() if len(names) > 1)
