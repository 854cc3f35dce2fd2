"""fp16, bf16 and fp32: the unquantized reference, a cast to the 16-bit type and back."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mpq._formats.base import NumberFormat, register_family, spec_fields
from mpqvocab import FormatSpec


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


_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@register_family("reference")
def _reference_format(spec: FormatSpec) -> ReferenceFormat:
    """``fp16``, ``bf16`` and ``fp32`` (fp32 leaves a float32 tensor as it is)."""
    return ReferenceFormat(**spec_fields(spec), dtype=_DTYPES[spec.name])
