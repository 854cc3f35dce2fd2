"""``validate(task, assignments)``: the held-out metric of the model at each configuration."""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping

import numpy as np
import pandas as pd
import torch

from mpq._apply import apply, calibrate
from mpq._param_checks import InstanceOf, check_param
from mpq._placement import check_device, placed
from mpq._quantizer import Calibration
from mpq._task import Task
from mpq._timeout import evaluate_within_limit
from mpq.exceptions import EvaluationTimeoutError, InvalidParameterError, TaskSpecError
from mpqvocab import parameter_message


def evaluate(task: Task, model: torch.nn.Module, *, may_skip: bool = False) -> float:
    """The task's metric of ``model``; a failure of the user's evaluate is one line naming it.
    Held to the search's ``--eval-timeout`` (:mod:`mpq._timeout`): NaN for an evaluation past it
    that ``may_skip`` (a configuration's, with ``--on-eval-timeout skip``)."""
    try:
        value = evaluate_within_limit(task.evaluate, model, f"task {task.name!r}", may_skip=may_skip)
        if value is None:
            return math.nan
        value = float(value)
    except EvaluationTimeoutError:
        raise
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise TaskSpecError(
            f"task {task.name!r}: evaluate raised {type(exc).__name__}: {first}; fix the task's evaluate function."
        ) from exc
    if not np.isfinite(value):
        raise TaskSpecError(f"task {task.name!r}: evaluate returned {value}; it must return a finite metric.")
    return value


def evaluate_configuration(task: Task, memo: dict, assignment: Mapping[str, str], act_ranges: Calibration) -> float:
    """The task's metric of its model at one configuration (a :class:`mpq._executors.Runner` call)."""
    return evaluate(task, apply(task.model, assignment, act_ranges=act_ranges), may_skip=True)


def validate(
    task: Task,
    assignments: Mapping[Hashable, Mapping[str, str]],
    *,
    act_ranges: Mapping[str, float] | None = None,
    progress: Callable[[int, int, str], None] | None = None,
    on_result: Callable[[Hashable, float], None] | None = None,
    device: str | torch.device | None = None,
) -> pd.Series:
    """Measure configurations: fake-quantize the model at each one and run the task's evaluate.

    Args:
        task: The task; ``task.evaluate`` scores a model on held-out data (which way it improves: ``task.higher_is_better``).
        assignments: Key -> configuration (layer -> candidate name), e.g.
            ``{p: run.assignment(p) for p in run.frontier["point"]}``.
        act_ranges: The calibrated quantizer (:func:`mpq.calibrate`), or ``{layer: max
            |input|}`` for mpq's first quantizer (see :func:`mpq.apply`); default:
            ``mpq.calibrate(task.model, task.calibration)``, once.
        progress: ``progress(done, total, key)`` before each evaluation.
        on_result: ``on_result(key, metric)`` after each evaluation, e.g. to store it, so an
            interrupted validation keeps what it measured.
        device: Where the model runs: ``"cpu"``, ``"cuda"``, ``"cuda:1"``; default: where the
            task's model is (``task.evaluate`` must bring its held-out data to the model's
            device). A device this machine lacks is refused before anything runs.

    Returns:
        The metric of each configuration, indexed by key, named ``task.metric_name``.

    Raises:
        InvalidParameterError: ``task`` has no evaluate function, or ``assignments`` is not a mapping.
        TaskSpecError: the task's evaluate raised or returned a value that is not finite.
        UnknownNameError: an unknown layer or candidate in a configuration.

    Example:
        >>> import mpq
        >>> task = mpq.load_task("example:digits-cnn")
        >>> metrics = mpq.validate(task, {"all-w8a8": dict.fromkeys(mpq.layers(task.model, task.calibration[0][0]).layer, "w8a8")})
        >>> bool(metrics["all-w8a8"] > 0.9)
        True
    """
    if not isinstance(task, Task):
        raise InvalidParameterError(
            f"The 'task' parameter of validate must be an mpq.Task. Got {type(task).__name__} instead."
        )
    if task.evaluate is None:
        raise InvalidParameterError(
            f"task {task.name!r} has no evaluate function, so its configurations cannot be validated; give "
            "Task(evaluate=...)."
        )
    if not isinstance(assignments, Mapping):
        raise InvalidParameterError(
            f"The 'assignments' parameter of validate must be a mapping of key to (layer -> candidate). "
            f"Got {type(assignments).__name__} instead."
        )
    check_param(
        "validate",
        "act_ranges",
        act_ranges,
        InstanceOf((Calibration, Mapping), "an mpq.calibrate result", optional=True),
    )
    for name, callback in (("progress", progress), ("on_result", on_result)):
        if callback is not None and not callable(callback):
            raise InvalidParameterError(parameter_message("validate", name, "a callable or None", callback))
    device = check_device("validate", device)
    metrics = {}
    with placed(task, device) as task:
        ranges = calibrate(task.model, task.calibration) if act_ranges is None else act_ranges
        for done, (key, assignment) in enumerate(assignments.items()):
            if progress is not None:
                progress(done, len(assignments), str(key))
            metrics[key] = evaluate(task, apply(task.model, assignment, act_ranges=ranges))
            if on_result is not None:
                on_result(key, metrics[key])
    return pd.Series(metrics, name=task.metric_name, dtype=float)
