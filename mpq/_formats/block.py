"""Shared-scale block formats: OCP MX (MXFP8/6/4) and NVIDIA NVFP4.

Blocks are consecutive values along each row (``x.reshape(x.shape[0], -1)``), the last one
zero-padded; their scale bits count in ``bits_per_value``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpq._formats.base import NumberFormat, block_amax, quantize_blocks, register_family, scaled_round, spec_fields
from mpq._formats.minifloat import MinifloatGrid
from mpqvocab import FormatSpec, format_spec

E8M0_MIN_EXP, E8M0_MAX_EXP = -127, 127  # OCP MX spec v1.0 table 7: E8M0 exponents (0xFF is NaN)


def mx_scale(amax: torch.Tensor, element: MinifloatGrid) -> torch.Tensor:
    """The E8M0 shared scale of OCP MX v1.0 section 6.3: ``2**(floor(log2(amax)) - emax_elem)``.

    The exponent is clamped to E8M0's range; an all-zero block gets scale 1. Elements of
    ``x / scale`` above the element's largest normal then saturate, as the spec says.

    Args:
        amax: Max |value| of every block.
        element: The element grid (``emax_elem`` is its ``max_exp``).

    Returns:
        Powers of two, same shape as ``amax``.
    """
    _, exponent = torch.frexp(amax)  # amax = m * 2**exponent, m in [0.5, 1): floor(log2) = exponent - 1
    shared = (exponent - 1 - element.max_exp).clamp(E8M0_MIN_EXP, E8M0_MAX_EXP)
    return torch.where(amax > 0, torch.ldexp(torch.ones_like(amax), shared), torch.ones_like(amax))


@dataclass(frozen=True)
class MXFormat(NumberFormat):
    """OCP MX: blocks of 32 minifloat elements share a power-of-two E8M0 scale from the data."""

    element: MinifloatGrid

    @property
    def max_value(self) -> float:
        return self.element.max_value

    @property
    def uses_range(self) -> bool:
        return False

    def _quantize_rows(self, rows: torch.Tensor, amax: torch.Tensor | None) -> torch.Tensor:
        return quantize_blocks(rows, self.group_size, self.element, lambda b: mx_scale(block_amax(b), self.element))


@dataclass(frozen=True)
class NVFP4Format(NumberFormat):
    """NVFP4: blocks of 16 E2M1 values share an E4M3 scale, on top of a float32 per-tensor scale.

    The per-tensor scale is ``amax / (448 * 6)`` (``amax`` calibrated, or from the data), so the
    largest block scale lands at E4M3's 448; each block scale is ``block_amax / 6`` rounded on
    the E4M3 grid in units of the per-tensor scale.
    """

    element: MinifloatGrid
    block_scale: MinifloatGrid

    @property
    def max_value(self) -> float:
        return self.element.max_value

    @property
    def uses_range(self) -> bool:
        return True

    def _quantize_rows(self, rows: torch.Tensor, amax: torch.Tensor | None) -> torch.Tensor:
        tensor_amax = rows.abs().amax() if amax is None else amax.amax()
        tensor_scale = tensor_amax / (self.block_scale.max_value * self.element.max_value)

        def scale_of(blocks: torch.Tensor) -> torch.Tensor:
            return scaled_round(block_amax(blocks) / self.element.max_value, tensor_scale, self.block_scale)

        return quantize_blocks(rows, self.group_size, self.element, scale_of)


@register_family("block")
def _block_format(spec: FormatSpec) -> NumberFormat:
    """``mxfp8`` (E4M3), ``mxfp6`` (E2M3), ``mxfp4`` (E2M1) share E8M0 scales; ``nvfp4`` E4M3 ones."""
    element = MinifloatGrid.of(spec.element)
    if spec.scale == "e8m0":
        return MXFormat(**spec_fields(spec), element=element)
    return NVFP4Format(
        **spec_fields(spec), element=element, block_scale=MinifloatGrid.of(format_spec(spec.scale).element)
    )
