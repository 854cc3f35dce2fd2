"""Arithmetic classes: what hardware multiplies in, and which class holds which.

Hardware does not run formats, it runs arithmetic classes: ``int2``, ``int3``, ``int4``,
``int6``, ``int8``, ``int16``, ``fp4``, ``fp6``, ``fp8``, ``fp16`` (fp16 and bf16), ``tf32`` and
``fp32``. Each format of the catalogue names its class (``FormatSpec.arith_class``).

A class *holds* another when every value of the second is exactly representable in the first,
so an operand can be converted (dequantised) to it without loss. That relation decides which
compute class runs a (weight, activation) pair on a device.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["ArithClass", "arith_class", "class_names", "holds"]

# Floating-point classes as sets of (exponent bits, mantissa bits, largest unbiased exponent).
# The largest exponents are those of the formats' specifications: OCP FP8 (E4M3: 448 = 1.75 x 2^8,
# E5M2: 57344 = 1.75 x 2^15), OCP MX v1.0 (FP6 E3M2: 28 = 1.75 x 2^4, E2M3: 7.5 = 1.875 x 2^2,
# FP4 E2M1: 6 = 1.5 x 2^2), IEEE 754 binary16/32, bfloat16 and NVIDIA TF32 (8-bit exponent).
_FP_FORMATS: dict[str, tuple[tuple[int, int, int], ...]] = {
    "fp4": ((2, 1, 2),),
    "fp6": ((3, 2, 4), (2, 3, 2)),
    "fp8": ((4, 3, 8), (5, 2, 15)),
    "fp16": ((5, 10, 15), (8, 7, 127)),
    "tf32": ((8, 10, 127),),
    "fp32": ((8, 23, 127),),
}
_FP_BITS = {"fp4": 4, "fp6": 6, "fp8": 8, "fp16": 16, "tf32": 19, "fp32": 32}
_INT_CLASS = re.compile(r"int(\d+)")
_INT_BITS = (2, 3, 4, 6, 8, 16)  # int16 only as the activations of CMSIS-NN's s16 kernels


@dataclass(frozen=True)
class ArithClass:
    """An arithmetic class a device can execute.

    Attributes:
        name: ``int<b>`` (b in 2, 3, 4, 6, 8, 16), ``fp4``, ``fp6``, ``fp8``, ``fp16``, ``tf32`` or ``fp32``.
        family: ``"int"`` or ``"fp"``.
        bits: Operand width in bits (19 for tf32).
    """

    name: str
    family: str
    bits: int


def arith_class(name: str) -> ArithClass:
    """Return the class record of a class name such as ``int8`` or ``fp16``.

    Args:
        name: A class name.

    Returns:
        Its :class:`ArithClass`.

    Raises:
        KeyError: If ``name`` is not a class name (callers turn this into their own message).
    """
    if name in _FP_BITS:
        return ArithClass(name, "fp", _FP_BITS[name])
    match = _INT_CLASS.fullmatch(name)
    if match and int(match.group(1)) in _INT_BITS:
        return ArithClass(name, "int", int(match.group(1)))
    raise KeyError(name)


def class_names() -> list[str]:
    """Return every class name a device file may list a rate for.

    Returns:
        The integer classes (int2, int3, int4, int6, int8, int16) then the floating-point ones.
    """
    return [f"int{b}" for b in _INT_BITS] + list(_FP_BITS)


def holds(executor: str, operand: str) -> bool:
    """Whether every value of class ``operand`` is exactly representable in class ``executor``.

    Rules: a class holds itself; ``int<c>`` holds ``int<b>`` for ``b <= c`` and no float; a
    float class holds a float class when, for every format of the operand, one of its own
    formats has at least as many exponent and mantissa bits; a float class holds ``int<b>``
    when one of its formats has ``mantissa + 2 >= b`` (the b - 1 magnitude bits fit in the
    significand) and a largest exponent of at least ``b - 2``.

    Args:
        executor: The class that would run the arithmetic.
        operand: The class the operand is stored in.

    Returns:
        True when the operand converts to ``executor`` without loss.
    """
    if executor == operand:
        return True
    ex, op = arith_class(executor), arith_class(operand)
    if ex.family == "int":
        return op.family == "int" and op.bits <= ex.bits
    if op.family == "int":
        return any(m + 2 >= op.bits and emax >= op.bits - 2 for _, m, emax in _FP_FORMATS[executor])
    return all(
        any(e_x >= e_o and m_x >= m_o for e_x, m_x, _ in _FP_FORMATS[executor]) for e_o, m_o, _ in _FP_FORMATS[operand]
    )
