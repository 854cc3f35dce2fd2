"""Minifloat grids (one generic round-to-nearest-even) and the FP8/FP6/FP4 formats.

Every FP format, every MX/NVFP4 block element, the NVFP4 block scale and the fp16 group scale
of the INT formats round through :meth:`MinifloatGrid.round`: a sign, ``exp_bits`` exponent bits
with ``bias``, ``man_bits`` mantissa bits, subnormals, and saturation at ``max_value`` (no
infinities; the top codes a format reserves for NaN/inf are excluded by ``max_value``). Stored
codes decode through :meth:`MinifloatGrid.code_values`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mpq._formats.base import ScaledFormat, register_formats


@dataclass(frozen=True)
class MinifloatGrid:
    """The values of a sign-exponent-mantissa format at scale 1.

    Attributes:
        exp_bits: Exponent bits.
        man_bits: Mantissa (fraction) bits.
        bias: Exponent bias; the smallest normal is ``2 ** (1 - bias)``.
        max_value: Largest finite magnitude; larger values saturate to it.
    """

    exp_bits: int
    man_bits: int
    bias: int
    max_value: float

    @property
    def bits(self) -> int:
        """Stored bits: sign, exponent and mantissa."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def max_exp(self) -> int:
        """Exponent of the largest normal (``emax_elem`` in the OCP MX spec)."""
        return math.floor(math.log2(self.max_value))

    def round(self, t: torch.Tensor) -> torch.Tensor:
        """Round to the nearest representable value, ties to even mantissa, saturating.

        Below the smallest normal the spacing stays ``2 ** (1 - bias - man_bits)``
        (subnormals), so tiny values round to subnormals or to zero.

        Args:
            t: A float32 or float64 tensor, in units of the scale.

        Returns:
            The rounded tensor, same shape and dtype; signs kept (``-0.0`` for tiny negatives).
        """
        magnitude = t.abs().clamp(max=self.max_value)
        # Spacing of the grid at each value: 2**(exponent - man_bits), the exponent no lower
        # than the smallest normal's. Powers of two scale exactly, so torch.round (half to
        # even) alone decides every tie.
        smallest_normal = 2.0 ** (1 - self.bias)
        step = _binade(magnitude).clamp(min=smallest_normal) * 2.0**-self.man_bits
        return torch.copysign(torch.round(magnitude / step) * step, t)

    def code_values(self) -> torch.Tensor:
        """The value of every ``bits``-bit code, in code order: what stored codes decode to.

        The grid's magnitudes in ascending order are zero, the subnormals (spacing
        ``2 ** (1 - bias - man_bits)``) and each binade up to ``max_value``. The encoding is
        monotone, so magnitude code ``m`` is the ``m``-th of them; codes past ``max_value`` (the
        NaN/inf codes of E4M3 and E5M2) saturate to it, and the top bit is the sign.

        Returns:
            A float32 tensor of ``2 ** bits`` values; code ``c`` decodes to entry ``c``.
        """
        fractions = torch.arange(2**self.man_bits, dtype=torch.float32) * 2.0**-self.man_bits
        binades = torch.tensor([2.0**e for e in range(1 - self.bias, self.max_exp + 1)], dtype=torch.float32)
        normals = ((1 + fractions) * binades[:, None]).flatten()
        magnitudes = torch.cat([fractions * 2.0 ** (1 - self.bias), normals[normals <= self.max_value]])
        saturated = magnitudes[-1].expand(2 ** (self.bits - 1) - len(magnitudes))
        magnitudes = torch.cat([magnitudes, saturated])
        return torch.cat([magnitudes, -magnitudes])


#: Integer view and exponent-field mask of each float dtype the rounding works in.
_EXPONENT_FIELD = {torch.float32: (torch.int32, 0x7F800000), torch.float64: (torch.int64, 0x7FF0000000000000)}


def _binade(magnitude: torch.Tensor) -> torch.Tensor:
    """``2**floor(log2(m))`` of each normal float32/float64 ``m`` (0 for zero and subnormals).

    Keeping only the exponent field of the bits is exact and several times faster than
    ``torch.frexp`` and ``torch.ldexp``.
    """
    int_dtype, mask = _EXPONENT_FIELD[magnitude.dtype]
    return (magnitude.view(int_dtype) & mask).view(magnitude.dtype)


E4M3 = MinifloatGrid(4, 3, 7, 448.0)  # OCP 8-bit FP spec v1.0, E4M3FN: S.1111.111 is NaN, no inf
E5M2 = MinifloatGrid(5, 2, 15, 57344.0)  # OCP 8-bit FP spec v1.0, E5M2: IEEE-like, 1.75 * 2**15
E3M2 = MinifloatGrid(3, 2, 3, 28.0)  # OCP MX spec v1.0 table 1, FP6 E3M2: no inf/NaN, 1.75 * 2**4
E2M3 = MinifloatGrid(2, 3, 1, 7.5)  # OCP MX spec v1.0 table 1, FP6 E2M3: no inf/NaN, 1.875 * 2**2
E2M1 = MinifloatGrid(2, 1, 1, 6.0)  # OCP MX spec v1.0 table 1, FP4 E2M1: no inf/NaN, 1.5 * 2**2
FP16 = MinifloatGrid(5, 10, 15, 65504.0)  # IEEE 754 binary16, largest finite value

#: Registry name of each scaled minifloat format and its grid.
MINIFLOAT_GRIDS: dict[str, MinifloatGrid] = {
    "fp8_e4m3": E4M3,
    "fp8_e5m2": E5M2,
    "fp6_e3m2": E3M2,
    "fp6_e2m3": E2M3,
    "fp4_e2m1": E2M1,
}


@register_formats
def _minifloat_formats():
    """FP8/FP6/FP4 with one float32 per-tensor scale ``amax / max_value``."""
    for name, grid in MINIFLOAT_GRIDS.items():
        yield ScaledFormat(
            name=name, family="float", element_bits=grid.bits, bits_per_value=float(grid.bits),
            granularity="tensor", group_size=None, grid=grid, scale_grid=None,
        )
