"""The user's input: a Task (a model, calibration data, a loss and a metric), and the helpers that run it."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.hooks import RemovableHandle

from mpq.exceptions import TaskSpecError

Inputs = Any  # a tensor, a tuple of tensors, or a dict of keyword tensors
Targets = Any


@dataclass
class Task:
    """A model, a little calibration data and how to score it.

    Args:
        name: A short name, stored with every run.
        model: The float32 model, in eval mode.
        calibration: Batches ``(inputs, targets)``; a few hundred samples is typical. The first
            batch's inputs trace layer shapes.
        loss_fn: ``loss_fn(output, targets)`` -> scalar, differentiable tensor.
        evaluate: ``evaluate(model)`` -> held-out metric, or None.
        metric_name: What ``evaluate`` measures (``accuracy``, ``cosine``, ``perplexity``...).
        higher_is_better: Which way the metric improves: True for an accuracy, False for a
            perplexity or an error. Drops, dominance, the best point and every chart follow it;
            a drop is the metric's change for the worse (a rise of a perplexity).
        fused: Groups of layers that must share one format in every configuration (q/k/v and
            gate/up of a decoder, which serving engines fuse into one matmul); ``mpq.search``
            keeps them together unless told ``fuse=False``.
        default_probes: The sensitivity probes a search or probe of this task takes when the caller
            names none (``mpq search`` without ``--probe``, ``mpq.search``/``mpq.probe`` without
            settings); empty: the Hessian traces. A causal language model's task asks for the
            empirical Fisher (``efisher_w``, ``efisher_a``): its Hessian traces do not resolve
            (docs/llm.md).
        spec: The ``--model`` spec that built the task (set by :func:`load_task`); stored with
            each run so that ``mpq search --resume`` can build it again.

    mpq runs a batch as ``model(inputs)``, or ``model(**inputs)`` when inputs is a dict.
    """

    name: str
    model: torch.nn.Module
    calibration: Sequence[tuple[Inputs, Targets]]
    loss_fn: Callable[[Any, Targets], torch.Tensor]
    evaluate: Callable[[torch.nn.Module], float] | None = None
    metric_name: str = "metric"
    higher_is_better: bool = True
    fused: Sequence[Sequence[str]] = ()
    default_probes: Sequence[str] = ()
    spec: str | None = None


def run_model(model: torch.nn.Module, inputs: Inputs) -> Any:
    """Run one batch the way DESIGN.md says: ``model(**inputs)`` for a dict, else ``model(inputs)``."""
    if isinstance(inputs, Mapping):
        return model(**inputs)
    if isinstance(inputs, tuple):
        return model(*inputs)
    return model(inputs)


@contextmanager
def hooked(handles: Iterable[RemovableHandle]) -> Iterator[None]:
    """Run the block under ``torch.no_grad``, then remove the hooks, whatever happens."""
    handles = list(handles)
    try:
        with torch.no_grad():
            yield
    finally:
        for handle in handles:
            handle.remove()


def map_leaves(fn: Callable[[Any], Any], obj: Any) -> Any:
    """``obj`` (a tensor, or dicts, lists and tuples of them) with each leaf replaced by ``fn(leaf)``."""
    if isinstance(obj, Mapping):
        return {key: map_leaves(fn, value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(map_leaves(fn, value) for value in obj)
    return fn(obj)


def to_device(obj: Any, device: torch.device) -> Any:
    """``obj`` with every tensor in it (nested in dicts, lists and tuples) on ``device``."""
    return map_leaves(lambda leaf: leaf.to(device) if isinstance(leaf, torch.Tensor) else leaf, obj)


def model_device(model: torch.nn.Module) -> torch.device:
    """Where the model's weights are: the device of its first parameter (or buffer); CPU without any."""
    tensor = next(iter(model.parameters()), None)
    if tensor is None:
        tensor = next(iter(model.buffers()), None)
    return torch.device("cpu") if tensor is None else tensor.device


def batch_size(inputs: Inputs) -> int:
    """Number of samples in a batch of inputs (the first dimension of its first tensor)."""
    if isinstance(inputs, Mapping):
        inputs = next(iter(inputs.values()))
    if isinstance(inputs, (tuple, list)):
        inputs = inputs[0]
    return int(inputs.shape[0])


def check_task(task: Any, source: str) -> Task:
    """Check the fields of a task a factory returned; one-line errors name ``source``."""
    if not isinstance(task, Task):
        raise TaskSpecError(
            f"{source}: returned {type(task).__name__}, not an mpq.Task; return mpq.Task(name=..., "
            "model=..., calibration=..., loss_fn=...)."
        )
    if not isinstance(task.model, torch.nn.Module):
        raise TaskSpecError(
            f"{source}: Task.model is {type(task.model).__name__}, not a torch.nn.Module; pass the model itself."
        )
    if len(task.calibration) == 0:
        raise TaskSpecError(f"{source}: Task.calibration is empty; give at least one (inputs, targets) batch.")
    if not callable(task.loss_fn):
        raise TaskSpecError(f"{source}: Task.loss_fn is not callable; pass loss_fn(output, targets) -> scalar tensor.")
    if task.evaluate is not None and not callable(task.evaluate):
        raise TaskSpecError(f"{source}: Task.evaluate is not callable; pass evaluate(model) -> float or None.")
    if not isinstance(task.higher_is_better, bool):
        raise TaskSpecError(
            f"{source}: Task.higher_is_better is {task.higher_is_better!r}; pass True (accuracy) or False (perplexity)."
        )
    if isinstance(task.fused, str) or not all(
        isinstance(group, Sequence) and not isinstance(group, str) and all(isinstance(n, str) for n in group)
        for group in task.fused
    ):
        raise TaskSpecError(f"{source}: Task.fused is {task.fused!r}; pass groups of layer names, e.g. [['q', 'k']].")
    if isinstance(task.default_probes, str) or not all(isinstance(name, str) for name in task.default_probes):
        raise TaskSpecError(
            f"{source}: Task.default_probes is {task.default_probes!r}; pass probe names, e.g. ('efisher_w', 'efisher_a')."
        )
    return task
