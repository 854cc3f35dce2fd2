"""fp16 and bf16: the unquantized reference, a cast to the 16-bit type and back."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpq._formats.base import NumberFormat, register_formats


@dataclass(frozen=True)
class ReferenceFormat(NumberFormat):
    """A cast to ``dtype`` and back (round to nearest even; beyond its range gives inf)."""

    dtype: torch.dtype

    @property
    def max_value(self) -> float:
        return torch.finfo(self.dtype).max

    @property
    def uses_range(self) -> bool:
        return False

    def _quantize_rows(self, rows: torch.Tensor, amax: torch.Tensor | None) -> torch.Tensor:
        return rows.to(self.dtype).to(rows.dtype)


@register_formats
def _reference_formats():
    """``fp16`` and ``bf16``."""
    for name, dtype in (("fp16", torch.float16), ("bf16", torch.bfloat16)):
        yield ReferenceFormat(
            name=name, family="reference", element_bits=16, bits_per_value=16.0,
            granularity="tensor", group_size=None, dtype=dtype,
        )
