"""Symmetric INT2..INT8 fake-quantizers (per tensor, per output channel, per group) and INT16.

INT16 exists per tensor only, for activations: CMSIS-NN's s16 kernels take int16 inputs with
int8 weights (the ``w8aint16`` candidate of the MCU targets).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpq._formats.base import ScaledFormat, register_formats
from mpq._formats.minifloat import FP16

INT_BITS = (2, 3, 4, 6, 8)
GROUP_SIZES = (32, 64, 128)


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


@register_formats
def _int_formats():
    """``int<b>`` (per tensor), ``int<b>_pc`` (per output channel), ``int<b>_g<n>`` (per group).

    Tensor and channel scales are float32 and not counted in ``bits_per_value``; group scales
    are fp16, so a group of n adds 16/n bits per value.
    """
    for bits in INT_BITS:
        grid = IntGrid(bits)
        yield ScaledFormat(
            name=f"int{bits}", family="int", element_bits=bits, bits_per_value=float(bits),
            granularity="tensor", group_size=None, grid=grid, scale_grid=None,
        )
        yield ScaledFormat(
            name=f"int{bits}_pc", family="int", element_bits=bits, bits_per_value=float(bits),
            granularity="channel", group_size=None, grid=grid, scale_grid=None,
        )
        for size in GROUP_SIZES:
            yield ScaledFormat(
                name=f"int{bits}_g{size}", family="int", element_bits=bits,
                bits_per_value=bits + FP16.bits / size, granularity="group", group_size=size,
                grid=grid, scale_grid=FP16,
            )
    yield ScaledFormat(
        name="int16", family="int", element_bits=16, bits_per_value=16.0,
        granularity="tensor", group_size=None, grid=IntGrid(16), scale_grid=None,
    )
