"""Candidates: a (weight format, activation format) pair, named ``w<W>a<A>``."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from mpq._formats.base import NumberFormat, get_format, list_formats
from mpq._param_checks import unknown_name
from mpq.exceptions import InvalidParameterError, UnknownNameError
from mpqvocab import ACT_SHORTHANDS, WEIGHT_SHORTHANDS

_GRAMMAR = (
    "write w<W>a<A> with W and A each one of 2, 3, 4, 6, 8, 16, fp8, fp6, fp4 or a format name "
    "from mpq.list_formats(), e.g. w4a8, w8a8, wfp8afp8, w16a16, wint4_g128aint8, wmxfp4amxfp8"
)


@dataclass(frozen=True)
class Candidate:
    """A weight format and an activation format that a layer can be assigned together.

    Embedding layers take integer indices as input: their activation format is ignored and
    only the weight format applies.

    Attributes:
        name: The name it was parsed from, e.g. ``w4a8``.
        weight_format: Format of the layer's weight.
        act_format: Format of the layer's input activation.
    """

    name: str
    weight_format: NumberFormat
    act_format: NumberFormat


def get_candidate(name: str | Candidate) -> Candidate:
    """Parse a candidate name ``w<W>a<A>``, split at the first ``a`` after the leading ``w``.

    ``W`` and ``A`` are format names (:func:`list_formats`) or shorthands: a bare
    2, 3, 4, 6 or 8 is ``int<b>_pc`` (per output channel) for weights and ``int<b>`` (per
    tensor) for activations; ``16`` is ``fp16``, ``fp8`` is ``fp8_e4m3``, ``fp6`` is
    ``fp6_e3m2``, ``fp4`` is ``fp4_e2m1``. So ``w4a8`` is int4_pc weights with int8
    activations, ``wint4_g128aint8``, ``wmxfp4amxfp8``, ``wnvfp4afp8`` and ``wbf16abf16`` name
    formats directly. Activations must not use a per-channel (``_pc``) format: channels are
    dim 0 of a weight, which activations lack. Embedding layers ignore the activation format.

    Args:
        name: A candidate name, or a Candidate (returned as is).

    Returns:
        The candidate.

    Raises:
        InvalidParameterError: the name is not a string of the form ``w<W>a<A>``, or its
            activation format is per channel.
        UnknownNameError: ``W`` or ``A`` is neither a shorthand nor a format name.
    """
    if isinstance(name, Candidate):
        return name
    if not isinstance(name, str):
        raise InvalidParameterError(
            f"The 'name' parameter of get_candidate must be a str or a Candidate. Got {name!r} instead."
        )
    split = name.find("a", 1)
    if not name.startswith("w") or split in (-1, 1, len(name) - 1):
        raise InvalidParameterError(f"candidate {name!r}: not of the form w<W>a<A>; {_GRAMMAR}.")
    weight = _resolve(name, name[1:split], "weight", WEIGHT_SHORTHANDS)
    act = _resolve(name, name[split + 1 :], "activation", ACT_SHORTHANDS)
    if act.granularity == "channel":
        raise InvalidParameterError(
            f"candidate {name!r}: activation format {act.name!r} scales per output channel, which "
            f"activations do not have; use {act.name.removesuffix('_pc')!r} (per tensor), a group or a block format."
        )
    return Candidate(name=name, weight_format=weight, act_format=act)


def _resolve(candidate: str, token: str, role: str, shorthands: dict[str, str]) -> NumberFormat:
    known = list(shorthands) + list_formats()
    if token not in known:
        raise UnknownNameError(f"candidate {candidate!r}: {unknown_name(f'{role} format', token, known)}")
    return get_format(shorthands.get(token, token))


def parse_candidates(func: str, candidates: object) -> list[Candidate]:
    """Check a non-empty collection of candidate names (or Candidates) once each; parse them.

    Raises:
        InvalidParameterError: not a collection, empty, a malformed name, or a name given twice.
        UnknownNameError: a name uses an unknown format.
    """
    if isinstance(candidates, (str, Candidate)) or not isinstance(candidates, Iterable):
        raise InvalidParameterError(
            f"The 'candidates' parameter of {func} must be a non-empty list of candidate names. Got {candidates!r} instead."
        )
    parsed = [get_candidate(c) for c in candidates]
    if not parsed:
        raise InvalidParameterError(
            f"The 'candidates' parameter of {func} must be a non-empty list of candidate names. Got [] instead."
        )
    names = [c.name for c in parsed]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise InvalidParameterError(f"{func}: candidates {', '.join(repeated)} given more than once; list each once.")
    return parsed


def candidate_table(candidates: Iterable[str | Candidate]) -> pd.DataFrame:
    """The candidates table (DESIGN.md): one row per candidate.

    Args:
        candidates: Candidate names or Candidates, each at most once.

    Returns:
        One row per candidate, in the order given: ``candidate`` (name), ``weight_format`` and
        ``act_format`` (format names), ``weight_bits`` and ``act_bits`` (bits per value, scale
        overhead included; float).

    Raises:
        InvalidParameterError: ``candidates`` is a single name rather than a collection, or
            names a candidate twice; or a name is malformed (see :func:`get_candidate`).
        UnknownNameError: a candidate names an unknown format.
    """
    parsed = parse_candidates("candidate_table", candidates)
    names = [c.name for c in parsed]
    return pd.DataFrame(
        {
            "candidate": names,
            "weight_format": [c.weight_format.name for c in parsed],
            "act_format": [c.act_format.name for c in parsed],
            "weight_bits": [float(c.weight_format.bits_per_value) for c in parsed],
            "act_bits": [float(c.act_format.bits_per_value) for c in parsed],
        },
        columns=["candidate", "weight_format", "act_format", "weight_bits", "act_bits"],
    )
