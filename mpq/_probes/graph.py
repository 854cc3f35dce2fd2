"""The task's model as a differentiable function of its layers' weights and input activations.

One forward pass (:meth:`LayerGraph.run`) returns the loss together with the tensors the probes
differentiate: a fresh leaf per layer weight (shared between tied layers) and, per layer call, a
node of its own for the layer's input. The input node is a view made in a forward pre-hook, so
layers that read the same tensor (an attention block's query, key and value) each get the
derivative of their own use only: the one the layer's activation format perturbs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import torch
from torch import nn
from torch.func import functional_call

from mpq._task import Inputs, Targets, Task, batch_size
from mpq.exceptions import LossIndependentError, ProbeError

#: Targets of a trace: ("w", layer) is the layer's weight, ("a", layer) its input activation.
Target = tuple[str, str]


@dataclass(frozen=True)
class Batch:
    """One calibration (micro-)batch and its weight ``n / N`` in the calibration loss."""

    inputs: Inputs
    targets: Targets
    size: int
    weight: float


def slice_batch(obj: Any, start: int, stop: int) -> Any:
    """Samples ``start:stop`` of a batch of inputs or targets (tensors, dicts, tuples, lists)."""
    if isinstance(obj, torch.Tensor):
        return obj[start:stop]
    if isinstance(obj, Mapping):
        return {k: slice_batch(v, start, stop) for k, v in obj.items()}
    if isinstance(obj, (tuple, list)):
        return type(obj)(slice_batch(v, start, stop) for v in obj)
    raise ProbeError(
        f"calibration batch: cannot split a {type(obj).__name__} into samples; use tensors, dicts, "
        "tuples or lists of tensors, or leave micro_batch_size unset."
    )


def calibration_batches(calibration: Sequence, micro_batch_size: int | None) -> list[Batch]:
    """The calibration batches, split into micro-batches, each weighted by its share of samples.

    The calibration loss the probes differentiate is the sample-weighted mean of the batch
    losses, ``L = sum_b n_b L_b / N``: for a ``loss_fn`` that averages over the batch (PyTorch's
    default reduction) it is the mean per-sample loss, however the samples are batched.
    """
    pieces = []
    for inputs, targets in calibration:
        n = batch_size(inputs)
        step = n if micro_batch_size is None else micro_batch_size
        for start in range(0, n, step):
            stop = min(start + step, n)
            if (start, stop) == (0, n):
                pieces.append((inputs, targets, n))
            else:
                pieces.append((slice_batch(inputs, start, stop), slice_batch(targets, start, stop), stop - start))
    total = sum(n for _, _, n in pieces)
    return [Batch(inputs, targets, n, n / total) for inputs, targets, n in pieces]


@dataclass
class Pass:
    """What one forward pass gives the probes.

    Attributes:
        output: The model's output.
        loss: ``loss_fn(output, targets)``.
        tensors: The distinct tensors to differentiate with respect to.
        owners: For each tensor, the targets whose trace it contributes to (tied layers share a
            weight; a layer called twice owns two input nodes).
    """

    output: Any
    loss: torch.Tensor
    tensors: list[torch.Tensor]
    owners: list[list[Target]]

    def select(self, kind: str) -> Pass:
        """The same pass restricted to the tensors of one kind (``"w"`` or ``"a"``)."""
        keep = [i for i, owners in enumerate(self.owners) if owners[0][0] == kind]
        return Pass(self.output, self.loss, [self.tensors[i] for i in keep], [self.owners[i] for i in keep])

    def restrict(self, targets: set[Target] | None) -> Pass:
        """The same pass restricted to the tensors of the given targets (None: all of them)."""
        if targets is None:
            return self
        keep = [i for i, owners in enumerate(self.owners) if any(t in targets for t in owners)]
        return Pass(self.output, self.loss, [self.tensors[i] for i in keep], [self.owners[i] for i in keep])


class LayerGraph:
    """Runs ``task.model`` with its layer weights and inputs exposed to autograd.

    Args:
        task: The task.
        table: Its layer table (``mpq.layers``): only layers that ran are probed.
    """

    def __init__(self, task: Task, table: pd.DataFrame):
        self.task = task
        modules = dict(task.model.named_modules())
        self.layers: list[str] = list(table["layer"])
        self.modules: dict[str, nn.Module] = {name: modules[name] for name in self.layers}
        kinds = dict(zip(table["layer"], table["kind"]))
        #: Layers with an activation trace: embeddings take indices, which are not quantized.
        self.act_layers: list[str] = [name for name in self.layers if kinds[name] != "embedding"]
        #: Elements each trace is over: the weight, or one sample's input at every call.
        self.n_params: dict[Target, int] = {("w", n): int(p) for n, p in zip(table["layer"], table["weight_params"])}
        self.n_params |= {("a", n): int(e) for n, e in zip(table["layer"], table["in_elems"]) if n in self.act_layers}

    def targets(self, kinds: Sequence[str]) -> list[Target]:
        """The (kind, layer) targets of the given kinds, ``w`` before ``a``, layers in order."""
        out: list[Target] = []
        for kind in kinds:
            out += [(kind, name) for name in (self.layers if kind == "w" else self.act_layers)]
        return out

    def run(self, batch: Batch, kinds: Sequence[str]) -> Pass:
        """One forward pass with the weights (``"w"`` in kinds) and inputs (``"a"``) exposed.

        Args:
            batch: The batch to run.
            kinds: Which of ``"w"`` and ``"a"`` to expose.

        Returns:
            The pass.

        Raises:
            ProbeError: the loss is not a finite scalar, or has no gradient at all.
        """
        leaves: dict[int, torch.Tensor] = {}
        weight_owners: dict[int, list[Target]] = {}
        if "w" in kinds:
            for name in self.layers:
                param = self.modules[name].weight
                leaves.setdefault(id(param), param.detach().requires_grad_(True))
                weight_owners.setdefault(id(param), []).append(("w", name))
        # Every other parameter detached, so autograd tracks only what the probes ask for; every
        # name of a tied parameter gets the same tensor.
        detached: dict[int, torch.Tensor] = {}
        overrides = {
            name: leaves[id(p)] if id(p) in leaves else detached.setdefault(id(p), p.detach())
            for name, p in self.task.model.named_parameters(remove_duplicate=False)
        }
        captured: list[tuple[torch.Tensor, Target]] = []

        def expose(name: str):
            def hook(module: nn.Module, args: tuple) -> tuple:
                x = args[0]
                node = x.view_as(x) if x.requires_grad else x.detach().requires_grad_(True)
                captured.append((node, ("a", name)))
                return (node, *args[1:])

            return hook

        handles = (
            [self.modules[name].register_forward_pre_hook(expose(name)) for name in self.act_layers]
            if "a" in kinds
            else []
        )
        try:
            with torch.enable_grad():
                output = _call(self.task.model, overrides, batch.inputs)
                loss = self.task.loss_fn(output, batch.targets)
        finally:
            for handle in handles:
                handle.remove()
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not bool(torch.isfinite(loss.detach()).all()):
            raise ProbeError(
                f"task {self.task.name}: loss_fn returned {loss!r} on a calibration batch; it must return a "
                "finite scalar tensor."
            )
        if not loss.requires_grad:
            raise LossIndependentError(
                f"task {self.task.name}: the loss does not depend on the model's weights (loss_fn returned a tensor "
                "without a gradient: detached, built from .item() or under torch.no_grad); compute it from the "
                "model's output with differentiable torch operations."
            )
        tensors = list(leaves.values()) + [node for node, _ in captured]
        owners = list(weight_owners.values()) + [[target] for _, target in captured]
        return Pass(output=output, loss=loss.reshape(()), tensors=tensors, owners=owners)


def _call(model: nn.Module, overrides: dict[str, torch.Tensor], inputs: Inputs) -> Any:
    """``run_model`` with some parameters replaced (``torch.func.functional_call``)."""
    if isinstance(inputs, Mapping):
        return functional_call(model, overrides, (), dict(inputs))
    if isinstance(inputs, tuple):
        return functional_call(model, overrides, inputs)
    return functional_call(model, overrides, (inputs,))


def gradients(
    value: torch.Tensor, run: Pass, *, create_graph: bool = False, retain_graph: bool = True
) -> list[torch.Tensor]:
    """``d value / d tensor`` for every tensor of a pass; a missing one is an error, not a zero.

    Raises:
        ProbeError: a layer ran but the value does not depend on its weight or input.
    """
    grads = torch.autograd.grad(
        value, run.tensors, create_graph=create_graph, retain_graph=retain_graph or create_graph, allow_unused=True
    )
    unused = sorted({layer for g, owners in zip(grads, run.owners) if g is None for _, layer in owners})
    if unused:
        raise ProbeError(
            f"layers {', '.join(unused)}: ran but the loss does not depend on them; make loss_fn use "
            "every output the model computes, or keep those layers out of the forward pass."
        )
    return list(grads)


def add_to(values: dict[Target, float], run: Pass, per_tensor: list[torch.Tensor], scale: float) -> None:
    """Add ``scale * per_tensor[i]`` to the value of every target owning tensor ``i``."""
    for value, owners in zip(per_tensor, run.owners):
        for target in owners:
            values[target] = values.get(target, 0.0) + scale * float(value)


def hvp(value: torch.Tensor, run: Pass, vectors: list[torch.Tensor], *, retain_graph: bool) -> list[torch.Tensor]:
    """The Hessian of ``value`` with respect to the pass's tensors, times ``vectors`` (one per tensor).

    A tensor the gradient does not depend on has a zero Hessian block, not a missing one.
    """
    return hvp_of_gradients(gradients(value, run, create_graph=True), run, vectors, retain_graph=retain_graph)


def hvp_of_gradients(
    grads: list[torch.Tensor], run: Pass, vectors: list[torch.Tensor], *, retain_graph: bool
) -> list[torch.Tensor]:
    """:func:`hvp` from the gradients (taken with ``create_graph=True``) of the pass's tensors: one
    first-order backward graph serves the products of several subsets of the tensors."""
    dot = sum((g * v).sum() for g, v in zip(grads, vectors))
    if not dot.requires_grad:  # the value is linear in every tensor: the Hessian is zero
        return [torch.zeros_like(v) for v in vectors]
    return list(
        torch.autograd.grad(dot, run.tensors, retain_graph=retain_graph, allow_unused=True, materialize_grads=True)
    )


def rademacher_like(t: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A tensor of independent +-1 entries, shape, dtype and device of ``t``: drawn from the CPU
    generator, then moved, so that a sample draws the same numbers on every device."""
    return torch.empty(t.shape, dtype=t.dtype).bernoulli_(0.5, generator=generator).mul_(2).sub_(1).to(t.device)
