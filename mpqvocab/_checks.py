"""Parameter checks at the entry of public functions, did-you-mean, and the one message template.

Follows scikit-learn's ``validate_params``: a constraint describes the accepted values and the
message shows the bad one: ``The 'n_samples' parameter of probe must be an int in the range
[1, inf). Got 0 instead.`` Every other message is one line:
``<subject>: <what is wrong, with the value>; <the fix>.``
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from os import PathLike
from typing import Any

from mpqvocab._errors import InvalidParameterError, UnknownNameError

__all__ = [
    "PATH",
    "InstanceOf",
    "Interval",
    "OneOf",
    "check_param",
    "choices_hint",
    "did_you_mean",
    "format_number",
    "parameter_message",
    "unknown_name",
]


@dataclass(frozen=True)
class Interval:
    """A numeric range; ``kind`` is ``int`` or ``float`` (an int is a float too, a bool neither)."""

    kind: type
    low: float | None
    high: float | None
    closed: str = "both"  # "both", "left", "right", "neither"

    def accepts(self, value: Any) -> bool:
        if isinstance(value, bool):
            return False
        if self.kind is int and not isinstance(value, Integral):
            return False
        if self.kind is float and not isinstance(value, Real):
            return False
        if isinstance(value, float) and math.isnan(value):
            return False
        if self.low is not None:
            if value < self.low or (value == self.low and self.closed in ("right", "neither")):
                return False
        if self.high is not None:
            if value > self.high or (value == self.high and self.closed in ("left", "neither")):
                return False
        return True

    def __str__(self) -> str:
        left = "[" if self.closed in ("both", "left") and self.low is not None else "("
        right = "]" if self.closed in ("both", "right") and self.high is not None else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        noun = "an int" if self.kind is int else "a float"
        return f"{noun} in the range {left}{low}, {high}{right}"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    options: tuple

    def accepts(self, value: Any) -> bool:
        return any(value is o or (type(value) is type(o) and value == o) for o in self.options)

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


@dataclass(frozen=True)
class InstanceOf:
    """A value of one of ``types`` (None included when ``optional``), described as ``what``."""

    types: tuple[type, ...]
    what: str
    optional: bool = False

    def accepts(self, value: Any) -> bool:
        return (self.optional and value is None) or (isinstance(value, self.types) and not isinstance(value, bool))

    def __str__(self) -> str:
        return f"{self.what} or None" if self.optional else self.what


#: A file path: a string or an ``os.PathLike``.
PATH = InstanceOf((str, PathLike), "a file path (str or os.PathLike)")


#: Characters of a value a message shows; a longer one (a 15,000-character --target) is cut.
SHOWN_CHARS = 80


def shown(value: object) -> str:
    """``repr(value)`` as a one-line message shows it: cut to :data:`SHOWN_CHARS` characters, with
    the length it had.

    Example:
        >>> shown("x" * 100)
        "'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx... (100 characters)"
    """
    text = repr(value)
    if len(text) <= SHOWN_CHARS:
        return text
    length = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: SHOWN_CHARS + 1]}...{length}"


def parameter_message(func: str, name: str, expected: object, value: Any) -> str:
    """The template: ``The 'name' parameter of func must be <expected>. Got <value> instead.``"""
    return f"The {name!r} parameter of {func} must be {expected}. Got {shown(value)} instead."


def check_param(
    func: str,
    name: str,
    value: Any,
    constraint: Interval | OneOf | InstanceOf,
    *,
    error: type[InvalidParameterError] = InvalidParameterError,
) -> None:
    """Raise ``error`` with the template when ``value`` breaks ``constraint``.

    Args:
        func: The public function's name, as the user typed it.
        name: The parameter's name.
        value: The value given.
        constraint: What the parameter accepts.
        error: The package's subclass of :class:`InvalidParameterError`.

    Example:
        >>> check_param("probe", "n_samples", 0, Interval(int, 1, None))
        Traceback (most recent call last):
        ...
        mpqvocab._errors.InvalidParameterError: The 'n_samples' parameter of probe must be an int in the range [1, inf). Got 0 instead.
    """
    if not constraint.accepts(value):
        raise error(parameter_message(func, name, constraint, value))


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string.

    Known names that start with ``name`` win (``h100`` -> ``h100-sxm``; the closest of them), then
    difflib's closest match.

    Example:
        >>> did_you_mean("h100", ["a100", "h100-sxm"])
        " (did you mean 'h100-sxm'?)"
    """
    known, name = list(known), str(name)
    prefixed = [k for k in known if name and k.startswith(name)]
    close = difflib.get_close_matches(name, prefixed, n=1, cutoff=0) or difflib.get_close_matches(name, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def choices_hint(name: object, known: Iterable[str]) -> str:
    """``"a, b, c (did you mean 'b'?)"``: the known names in the order given, then the hint."""
    known = list(known)
    return ", ".join(known) + did_you_mean(name, known)


def unknown_name(
    what: str,
    name: object,
    known: Iterable[str],
    *,
    subject: str | None = None,
    error: type[UnknownNameError] = UnknownNameError,
) -> UnknownNameError:
    """The one-line error for a name that is not known: ``[subject: ]unknown <what> 'x'; choose
    one of a, b, c (did you mean 'b'?).``

    Example:
        >>> print(unknown_name("format", "fp8_e4m2", ["fp8_e4m3", "int8"]))
        unknown format 'fp8_e4m2'; choose one of fp8_e4m3, int8 (did you mean 'fp8_e4m3'?).
    """
    prefix = f"{subject}: " if subject else ""
    return error(f"{prefix}unknown {what} {shown(name)}; choose one of {choices_hint(name, known)}.")


def format_number(value: float) -> str:
    """Shortest text that reads back as ``value`` exactly (integers without a trailing ``.0``).

    Example:
        >>> format_number(150000.0), format_number(1e-3)
        ('150000', '0.001')
    """
    value = float(value)
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)
