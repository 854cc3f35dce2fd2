"""Symmetric INT2..INT8 fake-quantizers (per tensor, per output channel, per group) and INT16.

INT16 exists per tensor only, for activations: CMSIS-NN's s16 kernels take int16 inputs with
int8 weights (the ``w8aint16`` candidate of the MCU targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpq._formats.base import ScaledFormat, register_family, spec_fields
from mpq._formats.minifloat import FP16
from mpqvocab import FormatSpec


@dataclass(frozen=True)
class IntGrid:
    """The integers ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1`` (symmetric: -2**(bits-1) unused)."""

    bits: int

    @property
    def max_value(self) -> float:
        return float(2 ** (self.bits - 1) - 1)

    def round(self, t: torch.Tensor) -> torch.Tensor:
        """Nearest integer (ties to even), saturated to ``[-max_value, max_value]``."""
        return torch.round(t).clamp(-self.max_value, self.max_value)


@register_family("int")
def _int_format(spec: FormatSpec) -> ScaledFormat:
    """``int<b>`` (per tensor), ``int<b>_pc`` (per output channel), ``int<b>_g<n>`` (per group).

    Tensor and channel scales are float32 and not counted in ``bits_per_value``; group scales
    are fp16, so a group of n adds 16/n bits per value.
    """
    scale_grid = FP16 if spec.scale == "fp16" else None
    return ScaledFormat(**spec_fields(spec), grid=IntGrid(spec.element_bits), scale_grid=scale_grid)
