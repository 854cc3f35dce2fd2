"""Operands stored as a deployment stores them: packed low-bit codes and their scales."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mpq._formats import NumberFormat
from mpq._formats.minifloat import MinifloatGrid

_SCALE_RANGE = (2.0**-8, 2.0**-6)  # random positive scales: any finite value times the same


def round_up(n: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``n``."""
    return -(-n // multiple) * multiple


@dataclass(frozen=True)
class Stored:
    """A tensor stored in a low-bit format: packed codes and their scales.

    The tensor is viewed as rows (dim 0, mpq's convention); each row holds ``cols`` values,
    padded to whole bytes and whole scale groups, packed in planes: with ``p = 8 // bits``
    codes per byte, byte ``j`` of a row holds values ``j, j + P, ..., j + (p - 1) P`` (``P``
    bytes per row) in its low to high bit fields, so unpacking is ``p`` whole-row shifts.

    Attributes:
        codes: uint8, shape (rows, P).
        bits: Bits of one code.
        cols: Real values per row.
        values: Value of each code (minifloats), or None for two's-complement integers.
        scales: Shape (1, 1), (rows, 1) or (rows, padded_cols // group).
        group: Values per scale along a row, or None.
        dtype: The dtype :meth:`dequantize` returns; ``values`` and ``scales`` are in the dtype
            the arithmetic runs in (float32 on a CPU, which converts fp16 slowly; else ``dtype``).
    """

    codes: torch.Tensor
    bits: int
    cols: int
    values: torch.Tensor | None
    scales: torch.Tensor
    group: int | None
    dtype: torch.dtype

    @classmethod
    def random(
        cls, fmt: NumberFormat, shape: Sequence[int], dtype: torch.dtype, device: torch.device, gen: torch.Generator
    ) -> Stored:
        """Random codes and scales of a tensor of ``shape`` stored in ``fmt``."""
        rows = shape[0] if len(shape) > 1 else 1
        cols = math.prod(shape) // rows
        bits = fmt.element_bits
        per_byte = 8 // bits
        unit = fmt.group_size or per_byte  # group sizes are multiples of per_byte
        padded = round_up(cols, unit)
        codes = torch.randint(0, 256, (rows, padded // per_byte), dtype=torch.uint8, generator=gen)
        scale_shape = {"tensor": (1, 1), "channel": (rows, 1)}.get(fmt.granularity, (rows, padded // unit))
        low, high = _SCALE_RANGE
        scales = low + (high - low) * torch.rand(scale_shape, generator=gen)
        grid = getattr(fmt, "element", None) or fmt.grid
        values = grid.code_values() if isinstance(grid, MinifloatGrid) else None
        arith = dtype if device.type == "cuda" else torch.float32
        return cls(
            codes=codes.to(device),
            bits=bits,
            cols=cols,
            values=None if values is None else values.to(device=device, dtype=arith),
            scales=scales.to(device=device, dtype=arith),
            group=fmt.group_size,
            dtype=dtype,
        )

    def take_rows(self, index: torch.Tensor) -> Stored:
        """The stored rows at ``index`` (an embedding's lookup), with their scales."""
        scales = self.scales.index_select(0, index) if self.scales.shape[0] > 1 else self.scales
        return Stored(
            self.codes.index_select(0, index), self.bits, self.cols, self.values, scales, self.group, self.dtype
        )

    def fields(self) -> torch.Tensor:
        """The unsigned codes, one per value, shape (rows, padded_cols)."""
        mask = (1 << self.bits) - 1
        if 8 // self.bits == 1:
            return self.codes if self.bits == 8 else self.codes & mask
        return torch.cat([(self.codes >> (self.bits * i)) & mask for i in range(8 // self.bits)], dim=1)

    def _signed(self) -> torch.Tensor:
        """Two's-complement codes as int8 values, shape (rows, padded_cols); a view for int8.

        Field ``i`` is shifted to the top of the byte, then arithmetic-shifted back down.
        """
        signed = self.codes.view(torch.int8)
        if self.bits == 8:
            return signed
        down = 8 - self.bits
        planes = []
        for i in range(8 // self.bits):
            up = 8 - self.bits * (i + 1)
            planes.append((signed << up if up else signed) >> down)
        return torch.cat(planes, dim=1)

    def _unpad(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, : self.cols] if t.shape[1] != self.cols else t

    def int8(self) -> torch.Tensor:
        """Integer codes as int8 values, shape (rows, cols): the int8 GEMM's operand."""
        return self._unpad(self._signed())

    def dequantize(self) -> torch.Tensor:
        """Each code's value times its scale, in ``dtype``, shape (rows, cols)."""
        if self.values is None:
            values = self._signed().to(self.scales.dtype)
        else:
            values = torch.take(self.values, self.fields().long())
        if self.group:
            rows = values.shape[0]
            values = (values.view(rows, -1, self.group) * self.scales.unsqueeze(-1)).view(rows, -1)
        else:
            values = values * self.scales
        return self._unpad(values).to(self.dtype)
