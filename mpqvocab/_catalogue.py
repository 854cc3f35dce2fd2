"""The number-format catalogue: every format mpq knows, its bits, its kind and its grid.

One record per format name. mpq builds its fake-quantizers from these records, hwmodels maps
each to the arithmetic class a device executes it in, and candidate names (``w<W>a<A>``) are
spelled in these names or the shorthands below. No torch here: the catalogue is data.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpqvocab._checks import unknown_name
from mpqvocab._errors import InvalidParameterError

__all__ = [
    "ACT_SHORTHANDS",
    "FAMILIES",
    "GROUP_SIZES",
    "INT_BITS",
    "FormatSpec",
    "MinifloatSpec",
    "WEIGHT_SHORTHANDS",
    "format_spec",
    "list_format_specs",
]

#: Format families, in the order the catalogue lists them.
FAMILIES = ("int", "float", "block", "reference")
#: Bit widths of the INT formats with tensor, channel and group scales.
INT_BITS = (2, 3, 4, 6, 8)
#: Values per group of the group-scaled INT formats.
GROUP_SIZES = (32, 64, 128)


@dataclass(frozen=True)
class MinifloatSpec:
    """A sign-exponent-mantissa grid at scale 1, saturating at ``max_value`` (no infinities).

    Attributes:
        exp_bits: Exponent bits.
        man_bits: Mantissa (fraction) bits.
        bias: Exponent bias; the smallest normal is ``2 ** (1 - bias)``.
        max_value: Largest finite magnitude; the top codes a format reserves for NaN/inf lie above it.
    """

    exp_bits: int
    man_bits: int
    bias: int
    max_value: float

    @property
    def bits(self) -> int:
        """Stored bits: sign, exponent and mantissa."""
        return 1 + self.exp_bits + self.man_bits


E4M3 = MinifloatSpec(4, 3, 7, 448.0)  # OCP 8-bit FP spec v1.0, E4M3FN: S.1111.111 is NaN, no inf
E5M2 = MinifloatSpec(5, 2, 15, 57344.0)  # OCP 8-bit FP spec v1.0, E5M2: IEEE-like, 1.75 * 2**15
E3M2 = MinifloatSpec(3, 2, 3, 28.0)  # OCP MX spec v1.0 table 1, FP6 E3M2: no inf/NaN, 1.75 * 2**4
E2M3 = MinifloatSpec(2, 3, 1, 7.5)  # OCP MX spec v1.0 table 1, FP6 E2M3: no inf/NaN, 1.875 * 2**2
E2M1 = MinifloatSpec(2, 1, 1, 6.0)  # OCP MX spec v1.0 table 1, FP4 E2M1: no inf/NaN, 1.5 * 2**2
FP16 = MinifloatSpec(5, 10, 15, 65504.0)  # IEEE 754 binary16, largest finite value
E8M0_BITS = 8  # OCP MX spec v1.0 section 5.4.1: the MX shared scale is E8M0
MX_BLOCK = 32  # OCP MX spec v1.0 section 5: k = 32 elements per block for every concrete MX format
NVFP4_BLOCK = 16  # NVIDIA Blackwell NVFP4: 16 E2M1 values share one FP8 E4M3 scale


@dataclass(frozen=True)
class FormatSpec:
    """One number format of the catalogue.

    Attributes:
        name: ``int4_pc``, ``fp8_e4m3``, ``mxfp4``, ``fp16``...
        family: ``int``, ``float`` (minifloat), ``block`` (MX, NVFP4) or ``reference`` (fp16,
            bf16, fp32: the unquantized types).
        element_bits: Bits of one stored element (4 for mxfp4, 16 for fp16).
        bits_per_value: Element bits plus the scale bits amortised over a group or block
            (int4_g128 with an fp16 scale: 4 + 16/128; mxfp4: 4 + 8/32; nvfp4: 4 + 8/16).
            Per-tensor and per-channel scales are not amortised.
        granularity: What one scale covers: ``tensor``, ``channel`` (dim 0 of a weight),
            ``group`` or ``block`` (``group_size`` consecutive values).
        group_size: Values per group or block; None otherwise.
        arith_class: The arithmetic class a device multiplies it in (``int4``, ``fp8``, ``fp4``,
            ``fp16`` for fp16 and bf16...): block formats execute in their elements' class,
            their shared scales applied outside the multiply.
        element: The minifloat grid of the elements (float and block formats; fp16 too).
        scale: The grid of the group or block scale: ``fp16`` (INT groups), ``e8m0`` (MX),
            ``fp8_e4m3`` (NVFP4); None for tensor and channel scales.
    """

    name: str
    family: str
    element_bits: int
    bits_per_value: float
    granularity: str
    group_size: int | None
    arith_class: str
    element: MinifloatSpec | None = None
    scale: str | None = None


def _catalogue() -> dict[str, FormatSpec]:
    specs: list[FormatSpec] = []
    for bits in INT_BITS:
        specs.append(FormatSpec(f"int{bits}", "int", bits, float(bits), "tensor", None, f"int{bits}"))
        specs.append(FormatSpec(f"int{bits}_pc", "int", bits, float(bits), "channel", None, f"int{bits}"))
        specs += [
            FormatSpec(
                f"int{bits}_g{size}", "int", bits, bits + FP16.bits / size, "group", size, f"int{bits}", scale="fp16"
            )
            for size in GROUP_SIZES
        ]
    # INT16 per tensor only: the activations of CMSIS-NN's s16 kernels (w8aint16).
    specs.append(FormatSpec("int16", "int", 16, 16.0, "tensor", None, "int16"))
    for name, grid, arith in (
        ("fp8_e4m3", E4M3, "fp8"),
        ("fp8_e5m2", E5M2, "fp8"),
        ("fp6_e3m2", E3M2, "fp6"),
        ("fp6_e2m3", E2M3, "fp6"),
        ("fp4_e2m1", E2M1, "fp4"),
    ):
        specs.append(FormatSpec(name, "float", grid.bits, float(grid.bits), "tensor", None, arith, element=grid))
    for name, grid, arith in (("mxfp8", E4M3, "fp8"), ("mxfp6", E2M3, "fp6"), ("mxfp4", E2M1, "fp4")):
        specs.append(
            FormatSpec(
                name,
                "block",
                grid.bits,
                grid.bits + E8M0_BITS / MX_BLOCK,
                "block",
                MX_BLOCK,
                arith,
                element=grid,
                scale="e8m0",
            )
        )
    specs.append(
        FormatSpec(
            "nvfp4",
            "block",
            E2M1.bits,
            E2M1.bits + E4M3.bits / NVFP4_BLOCK,
            "block",
            NVFP4_BLOCK,
            "fp4",
            element=E2M1,
            scale="fp8_e4m3",
        )
    )
    specs.append(FormatSpec("fp16", "reference", 16, 16.0, "tensor", None, "fp16", element=FP16))
    specs.append(FormatSpec("bf16", "reference", 16, 16.0, "tensor", None, "fp16"))  # bf16 runs on fp16-class units
    specs.append(FormatSpec("fp32", "reference", 32, 32.0, "tensor", None, "fp32"))
    return {spec.name: spec for spec in specs}


_CATALOGUE = _catalogue()

_FLOAT_SHORTHANDS = {"16": "fp16", "fp8": "fp8_e4m3", "fp6": "fp6_e3m2", "fp4": "fp4_e2m1"}
#: Short names in a candidate ``w<W>a<A>``: a bare bit count is INT per output channel for
#: weights ...
WEIGHT_SHORTHANDS = {str(bits): f"int{bits}_pc" for bits in INT_BITS} | _FLOAT_SHORTHANDS
#: ... and INT per tensor for activations.
ACT_SHORTHANDS = {str(bits): f"int{bits}" for bits in INT_BITS} | _FLOAT_SHORTHANDS


def format_spec(name: str, *, subject: str | None = None) -> FormatSpec:
    """The catalogue's record of a format.

    Args:
        name: A format name from :func:`list_format_specs`.
        subject: Prefix of the error message naming where the name came from.

    Returns:
        The record.

    Raises:
        InvalidParameterError: ``name`` is not a string.
        UnknownNameError: no format has that name; the message lists the known ones.

    Example:
        >>> format_spec("int4_g128").bits_per_value
        4.125
    """
    if not isinstance(name, str):
        raise InvalidParameterError(f"The 'name' parameter of format_spec must be a str. Got {name!r} instead.")
    try:
        return _CATALOGUE[name]
    except KeyError:
        raise unknown_name("format", name, _CATALOGUE, subject=subject) from None


def list_format_specs() -> list[FormatSpec]:
    """Every format of the catalogue: INT, then minifloat, block and reference formats."""
    return list(_CATALOGUE.values())
