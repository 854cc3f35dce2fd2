"""Cost models registered by device kind (``gpu``, ``fpga``, ``mcu``, ``cpu``).

A cost model is a function ``(pairs, device, batch_size) -> DataFrame`` plus the spec record
type that reads its numbers from a device file::

    @register_cost_model("gpu", spec=RooflineSpec)
    def roofline_costs(pairs, device, batch_size): ...

``pairs`` has one row per (layer, candidate) in output order: every column of the layers and
candidates tables plus ``weight_class`` and ``act_class``. The function returns a frame aligned
with it holding ``latency_s``, ``energy_j`` and the target's own columns, and optionally
``weight_bytes`` where the device stores weights at other than their format's width.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd

from hwmodels._errors import DeviceSpecError
from mpqvocab import choices_hint

if TYPE_CHECKING:
    from hwmodels._device import Device

__all__ = ["CostModel", "get_cost_model", "register_cost_model"]

CostFunction = Callable[[pd.DataFrame, "Device", int], pd.DataFrame]


@dataclass(frozen=True)
class CostModel:
    """One registered cost model.

    Attributes:
        kind: The device kind it serves.
        spec: The spec record type; ``spec.read(reader)`` parses a device file's numbers and
            ``spec_instance.limits()`` returns the device capacities the solver may budget.
        compute: The cost function.
        max_columns: Cost columns the solver bounds by their maximum over layers, not their sum.
    """

    kind: str
    spec: Any
    compute: CostFunction
    max_columns: tuple[str, ...] = ()


_MODELS: dict[str, CostModel] = {}


def register_cost_model(
    kind: str, *, spec: Any, max_columns: tuple[str, ...] = ()
) -> Callable[[CostFunction], CostFunction]:
    """Register the decorated function as the cost model of device ``kind``.

    Args:
        kind: Device kind as written in device files (``kind = "gpu"``).
        spec: Spec record type with a ``read(reader)`` classmethod and a ``limits()`` method.
        max_columns: Columns the solver bounds by their maximum (MCU peak SRAM).

    Returns:
        A decorator that registers the function and returns it unchanged.
    """

    def decorator(fn: CostFunction) -> CostFunction:
        _MODELS[kind] = CostModel(kind, spec, fn, tuple(max_columns))
        return fn

    return decorator


def get_cost_model(kind: str, *, source: str) -> CostModel:
    """Return the cost model registered for ``kind``.

    Args:
        kind: The device kind.
        source: The device file, for the message.

    Returns:
        The registered :class:`CostModel`.

    Raises:
        DeviceSpecError: If no model serves ``kind``.
    """
    if kind not in _MODELS:
        raise DeviceSpecError(f"{source}: 'kind' {kind!r} has no cost model; use one of {choices_hint(kind, _MODELS)}.")
    return _MODELS[kind]
