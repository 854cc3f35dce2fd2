"""Minifloat grids (one generic round-to-nearest-even) and the FP8/FP6/FP4 formats.

The grids' numbers (exponent and mantissa bits, bias, largest value) are the catalogue's
(``mpqvocab``); this module rounds onto them with torch.

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

from mpq._formats.base import ScaledFormat, register_family, spec_fields
from mpqvocab import FormatSpec, MinifloatSpec, format_spec


@dataclass(frozen=True)
class MinifloatGrid(MinifloatSpec):
    """The values of a catalogue minifloat (``mpqvocab.MinifloatSpec``) at scale 1, and their rounding."""

    @classmethod
    def of(cls, spec: MinifloatSpec) -> MinifloatGrid:
        """The grid of a catalogue record's element spec."""
        return cls(spec.exp_bits, spec.man_bits, spec.bias, spec.max_value)

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


E4M3 = MinifloatGrid.of(format_spec("fp8_e4m3").element)
E5M2 = MinifloatGrid.of(format_spec("fp8_e5m2").element)
E3M2 = MinifloatGrid.of(format_spec("fp6_e3m2").element)
E2M3 = MinifloatGrid.of(format_spec("fp6_e2m3").element)
E2M1 = MinifloatGrid.of(format_spec("fp4_e2m1").element)
FP16 = MinifloatGrid.of(format_spec("fp16").element)


@register_family("float")
def _minifloat_format(spec: FormatSpec) -> ScaledFormat:
    """FP8/FP6/FP4 with one float32 per-tensor scale ``amax / max_value``."""
    return ScaledFormat(**spec_fields(spec), grid=MinifloatGrid.of(spec.element), scale_grid=None)
