"""Symmetric INT2..INT8 fake-quantizers (per tensor, per output channel, per group) and INT16.

The registered formats round on the *narrow* grid ``-(2**(b-1) - 1) .. 2**(b-1) - 1`` (mpq's
first quantizer, which stored runs reproduce); the calibrated quantizer (:mod:`mpq._quantizer`)
rounds weights on the *full* two's-complement grid ``-2**(b-1) .. 2**(b-1) - 1`` of the same
bits (:func:`full_range`): INT2 then has four levels, not three.

INT16 exists per tensor only, for activations: CMSIS-NN's s16 kernels take int16 inputs with
int8 weights (the ``w8aint16`` candidate of the MCU targets).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from mpq._formats.base import ScaledFormat, register_family, spec_fields
from mpq._formats.minifloat import FP16
from mpqvocab import FormatSpec


@dataclass(frozen=True)
class IntGrid:
    """The integers of ``bits`` bits: ``-(2**(bits-1) - 1) .. 2**(bits-1) - 1`` when ``narrow``
    (symmetric, -2**(bits-1) unused), else ``-2**(bits-1) .. 2**(bits-1) - 1`` (every code)."""

    bits: int
    narrow: bool = True

    @property
    def max_value(self) -> float:
        """The magnitude a symmetric range maps to: the top code when narrow; half a step past
        it on the full grid (``2**(bits-1) - 0.5``), so that ``[-amax, amax]`` spans all codes."""
        top = float(2 ** (self.bits - 1) - 1)
        return top if self.narrow else top + 0.5

    @property
    def low(self) -> float:
        """The lowest code."""
        return -float(2 ** (self.bits - 1) - 1) if self.narrow else -float(2 ** (self.bits - 1))

    def round(self, t: torch.Tensor) -> torch.Tensor:
        """Nearest integer (ties to even), saturated to the grid's codes."""
        return torch.round(t).clamp(self.low, float(2 ** (self.bits - 1) - 1))


def full_range(fmt: ScaledFormat) -> ScaledFormat:
    """An INT format on its full two's-complement grid (same bits, scales and granularity)."""
    return dataclasses.replace(fmt, grid=IntGrid(fmt.grid.bits, narrow=False))


@register_family("int")
def _int_format(spec: FormatSpec) -> ScaledFormat:
    """``int<b>`` (per tensor), ``int<b>_pc`` (per output channel), ``int<b>_g<n>`` (per group).

    Tensor and channel scales are float32 and not counted in ``bits_per_value``; group scales
    are fp16, so a group of n adds 16/n bits per value.
    """
    scale_grid = FP16 if spec.scale == "fp16" else None
    return ScaledFormat(**spec_fields(spec), grid=IntGrid(spec.element_bits), scale_grid=scale_grid)
