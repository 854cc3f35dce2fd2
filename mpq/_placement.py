"""Device placement: the device a task's model and calibration batches run on (``--device``,
``device=``), checked before anything runs. Where evaluations run (executors, workers) is
:mod:`mpq._executors`'."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch

from mpq._param_checks import InstanceOf, check_param
from mpq._task import Task, model_device, to_device
from mpq.exceptions import InvalidParameterError
from mpqvocab import parameter_message

#: What ``device`` takes, as a refusal names it.
_DEVICE_NAME = "a device name such as 'cpu', 'cuda' or 'cuda:1'"


def check_device(func: str, device: object) -> torch.device | None:
    """``device`` as a torch device (None stays None: the model's own); one that does not exist
    here, such as ``cuda`` without a GPU, is refused before anything runs."""
    check_param(func, "device", device, InstanceOf((str, torch.device), _DEVICE_NAME, True))
    if device is None:
        return None
    try:
        found = torch.device(device)
    except RuntimeError:
        raise InvalidParameterError(parameter_message(func, "device", _DEVICE_NAME, device)) from None
    if found.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "without CUDA"
            raise InvalidParameterError(
                f"device {str(device)!r}: torch {torch.__version__} ({build}) sees no GPU on this machine; run on a "
                "machine with an NVIDIA GPU and a CUDA build of torch, or leave out --device (the CPU)."
            )
        if found.index is not None and found.index >= count:
            raise InvalidParameterError(
                f"device {str(device)!r}: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}; name one of them."
            )
    elif found.type != "cpu":
        raise InvalidParameterError(parameter_message(func, "device", _DEVICE_NAME, device))
    return found


def on_device(task: Task, device: torch.device | None) -> Task:
    """The task with its model and calibration batches moved to ``device`` once (the model in
    place; None: where the model is); probe, apply and validate then run there."""
    device = model_device(task.model) if device is None else device
    task.model.to(device)  # on the CPU too: a GPU run takes the same path as every CPU test
    return replace(task, calibration=to_device(list(task.calibration), device))


@contextmanager
def placed(task: Task, device: torch.device | None) -> Iterator[Task]:
    """:func:`on_device` for the block; the model goes back where it was after it."""
    home = model_device(task.model)
    try:
        yield on_device(task, device)
    finally:
        task.model.to(home)
