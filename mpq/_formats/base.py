"""NumberFormat, the scaled quantizer every INT and minifloat format shares, and the registry.

A format fake-quantizes a tensor in three steps: view it as rows (``x.reshape(x.shape[0], -1)``:
dim 0 is the output channel of a weight; a 1-D tensor is one row), optionally saturate at a calibrated ``amax``, and
round every row, group or block to ``scale * grid value``. A *grid* is the set of element values
at scale 1 (integers for INT, a minifloat's representable values); a format is a grid plus the
rule that picks its scales.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from numbers import Real
from typing import Protocol

import torch
import torch.nn.functional as F

from mpq._param_checks import unknown_name
from mpq.exceptions import InvalidParameterError
from mpqvocab import FormatSpec, list_format_specs


class Grid(Protocol):
    """Element values at scale 1, rounded to by nearest (ties to even), saturating."""

    @property
    def max_value(self) -> float: ...

    def round(self, t: torch.Tensor) -> torch.Tensor: ...


@dataclass(frozen=True)
class NumberFormat(ABC):
    """A number format and its fake-quantizer; get one with ``mpq.get_format(name)``.

    Attributes:
        name: Registry name, e.g. ``int4_pc``, ``fp8_e4m3``, ``mxfp4``, ``fp16``.
        family: ``int``, ``float`` (minifloat), ``block`` (MX, NVFP4) or ``reference``
            (fp16/bf16, the unquantized baseline).
        element_bits: Bits of one stored element (4 for mxfp4, 16 for fp16).
        bits_per_value: Element bits plus the scale bits amortised over a group or block
            (int4_g128 with an fp16 scale: 4 + 16/128 = 4.125; mxfp4: 4 + 8/32 = 4.25; nvfp4:
            4 + 8/16 = 4.5). Per-tensor and per-channel scales are not amortised.
        granularity: What one scale covers: ``tensor``, ``channel`` (dim 0), ``group`` or
            ``block`` (``group_size`` consecutive values along the last dim of the rows).
        group_size: Values per group or block; None for tensor and channel granularity.
    """

    name: str
    family: str
    element_bits: int
    bits_per_value: float
    granularity: str
    group_size: int | None

    @property
    @abstractmethod
    def max_value(self) -> float:
        """Largest grid magnitude at scale 1 (448 for fp8_e4m3, 7 for int4, 6 for mxfp4)."""

    @property
    @abstractmethod
    def uses_range(self) -> bool:
        """Whether activations need a calibrated ``amax`` (static per-tensor scale).

        True for tensor and channel granularity and for NVFP4's per-tensor scale; group and
        MX formats scale every group from the data, reference formats only cast.
        """

    def quantize(self, x: torch.Tensor, amax: torch.Tensor | float | None = None) -> torch.Tensor:
        """Fake-quantize a tensor: same shape and dtype, values on the format's scaled grid.

        Rows are ``x.reshape(x.shape[0], -1)`` (a conv weight (out, in, kh, kw) gives
        (out, in*kh*kw)); a 1-D or 0-D tensor is one row. Channel scales are per row; groups
        and blocks run along each row, a ragged last group zero-padded. Rounding is to nearest,
        ties to even. All-zero input gives zeros.

        Args:
            x: A floating-point tensor.
            amax: A calibrated absolute range: a float, a one-element tensor or (x with 2 or
                more dims) a tensor of shape ``(x.shape[0],)``, one range per row. Values
                beyond it saturate. None takes the range from ``x`` at the format's
                granularity. Group and block formats always take their scales from the data
                (``amax`` then only saturates, and sets NVFP4's per-tensor scale).

        Returns:
            The fake-quantized tensor, same shape, dtype and device as ``x``.

        Raises:
            InvalidParameterError: ``x`` is not a floating-point tensor, or ``amax`` is
                negative, not finite, or of the wrong shape.
        """
        _check_tensor(self.name, x)
        if x.numel() == 0:
            return x.clone()
        rows = x.to(torch.promote_types(x.dtype, torch.float32)).reshape(x.shape[0] if x.dim() > 1 else 1, -1)
        bound = _amax_tensor(self.name, amax, rows)
        if bound is not None:
            rows = torch.minimum(torch.maximum(rows, -bound), bound)
        return self._quantize_rows(rows, bound).reshape(x.shape).to(x.dtype)

    @abstractmethod
    def _quantize_rows(self, rows: torch.Tensor, amax: torch.Tensor | None) -> torch.Tensor:
        """Quantize a 2-D float tensor already clamped to ``amax`` (shape () or (rows, 1))."""


@dataclass(frozen=True)
class ScaledFormat(NumberFormat):
    """Symmetric scaled quantizer: ``scale * grid.round(x / scale)``, ``scale = amax / grid.max_value``.

    One scale per tensor, per row (output channel) or per group of ``group_size`` values;
    group scales are rounded on ``scale_grid`` (fp16) when it is given, else kept in float32.
    """

    grid: Grid
    scale_grid: Grid | None

    @property
    def max_value(self) -> float:
        return self.grid.max_value

    @property
    def uses_range(self) -> bool:
        return self.granularity in ("tensor", "channel")

    def _quantize_rows(self, rows: torch.Tensor, amax: torch.Tensor | None) -> torch.Tensor:
        if self.granularity == "group":
            return quantize_blocks(rows, self.group_size, self.grid, lambda b: self._scale(block_amax(b)))
        if amax is None:
            amax = rows.abs().amax() if self.granularity == "tensor" else rows.abs().amax(1, keepdim=True)
        return scaled_round(rows, self._scale(amax), self.grid)

    def _scale(self, amax: torch.Tensor) -> torch.Tensor:
        scale = amax / self.grid.max_value
        return scale if self.scale_grid is None else self.scale_grid.round(scale)


def scaled_round(t: torch.Tensor, scale: torch.Tensor, grid: Grid) -> torch.Tensor:
    """``scale * grid.round(t / scale)``; a zero scale gives zeros (no NaN)."""
    safe = torch.where(scale > 0, scale, torch.ones_like(scale))
    return grid.round(t / safe) * scale


def block_amax(blocks: torch.Tensor) -> torch.Tensor:
    """Max |value| of every block, shape (rows, n_blocks, 1)."""
    return blocks.abs().amax(-1, keepdim=True)


def quantize_blocks(
    rows: torch.Tensor, size: int, grid: Grid, scale_of: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Round every block of ``size`` values along each row on ``grid`` with its own scale.

    Args:
        rows: 2-D tensor; its last dim is zero-padded to a multiple of ``size``.
        size: Values per block.
        grid: The element grid.
        scale_of: Maps the blocks, shape (rows, n_blocks, size), to their scales, shape
            (rows, n_blocks, 1).

    Returns:
        The quantized rows, shape of ``rows``.
    """
    cols = rows.shape[1]
    blocks = F.pad(rows, (0, -cols % size)).reshape(rows.shape[0], -1, size)
    return scaled_round(blocks, scale_of(blocks), grid).reshape(rows.shape[0], -1)[:, :cols]


def _check_tensor(name: str, x: object) -> None:
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        what = f"a {x.dtype} tensor" if isinstance(x, torch.Tensor) else type(x).__name__
        raise InvalidParameterError(
            f"format {name}: quantize needs a floating-point tensor, got {what}; pass x.float()."
        )


def _amax_tensor(name: str, amax: torch.Tensor | float | None, rows: torch.Tensor) -> torch.Tensor | None:
    """``amax`` as a tensor of shape () or (rows, 1) on the device and dtype of ``rows``."""
    if amax is None:
        return None
    if isinstance(amax, Real) and not isinstance(amax, bool):
        bound = torch.tensor(float(amax), dtype=rows.dtype, device=rows.device)
    elif isinstance(amax, torch.Tensor) and (amax.numel() == 1 or tuple(amax.shape) == (rows.shape[0],)):
        bound = amax.to(rows).reshape(()) if amax.numel() == 1 else amax.to(rows).reshape(-1, 1)
    else:
        shape = tuple(amax.shape) if isinstance(amax, torch.Tensor) else type(amax).__name__
        raise InvalidParameterError(
            f"format {name}: amax must be a float or a tensor of shape () or ({rows.shape[0]},), "
            f"got {shape}; pass the calibrated max |x| per tensor or per output channel."
        )
    if not bool(torch.isfinite(bound).all()) or bool((bound < 0).any()):
        raise InvalidParameterError(
            f"format {name}: amax must be finite and >= 0, got {amax}; pass the calibrated max |x|."
        )
    return bound


#: Quantizer builders by format family, registered by the family modules.
_BUILDERS: dict[str, Callable[[FormatSpec], NumberFormat]] = {}
_REGISTRY: dict[str, NumberFormat] = {}


def register_family(
    family: str,
) -> Callable[[Callable[[FormatSpec], NumberFormat]], Callable[[FormatSpec], NumberFormat]]:
    """Decorator: ``builder(spec)`` makes the quantizer of every catalogue format of ``family``."""

    def register(builder: Callable[[FormatSpec], NumberFormat]) -> Callable[[FormatSpec], NumberFormat]:
        _BUILDERS[family] = builder
        return builder

    return register


def spec_fields(spec: FormatSpec) -> dict:
    """The NumberFormat fields a catalogue record fixes (name, family, bits, granularity)."""
    return dict(
        name=spec.name,
        family=spec.family,
        element_bits=spec.element_bits,
        bits_per_value=spec.bits_per_value,
        granularity=spec.granularity,
        group_size=spec.group_size,
    )


def _formats() -> dict[str, NumberFormat]:
    """Every catalogue format's quantizer, built once on first use."""
    if not _REGISTRY:
        _REGISTRY.update({spec.name: _BUILDERS[spec.family](spec) for spec in list_format_specs()})
    return _REGISTRY


def get_format(name: str) -> NumberFormat:
    """The number format registered under a name.

    Args:
        name: A name from :func:`list_formats`, e.g. ``int4_pc``, ``int4_g128``, ``fp8_e4m3``,
            ``mxfp4``, ``nvfp4``, ``fp16``.

    Returns:
        The format.

    Raises:
        InvalidParameterError: ``name`` is not a string.
        UnknownNameError: no format has that name; the message lists the known ones.
    """
    if not isinstance(name, str):
        raise InvalidParameterError(f"The 'name' parameter of get_format must be a str. Got {name!r} instead.")
    try:
        return _formats()[name]
    except KeyError:
        raise unknown_name("format", name, _formats()) from None


def list_formats() -> list[str]:
    """Names of every format: INT, then minifloat, block and reference formats.

    Returns:
        The format names, in the catalogue's order (``mpqvocab.list_format_specs``).
    """
    return list(_formats())
