"""Parameter checks at the entry of public functions, with one message template.

Follows scikit-learn's ``validate_params``: a constraint object describes the accepted values
and the message shows the bad one: ``The 'n_samples' parameter of probe must be an int in the
range [1, inf). Got 0 instead.``
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any

from mpq.exceptions import InvalidParameterError, UnknownNameError


@dataclass(frozen=True)
class Interval:
    """A numeric range; ``kind`` is ``int`` or ``float``."""

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
        left = "[" if self.closed in ("both", "left") else "("
        right = "]" if self.closed in ("both", "right") else ")"
        low = "-inf" if self.low is None else f"{self.low:g}"
        high = "inf" if self.high is None else f"{self.high:g}"
        noun = "an int" if self.kind is int else "a float"
        return f"{noun} in the range {left}{low}, {high}{right}"


@dataclass(frozen=True)
class OneOf:
    """One of a fixed set of values."""

    options: tuple

    def accepts(self, value: Any) -> bool:
        return value in self.options

    def __str__(self) -> str:
        return "one of " + ", ".join(repr(o) for o in self.options)


def check_param(func: str, name: str, value: Any, constraint: Interval | OneOf) -> None:
    """Raise InvalidParameterError with the template when ``value`` breaks ``constraint``."""
    if not constraint.accepts(value):
        raise InvalidParameterError(
            f"The {name!r} parameter of {func} must be {constraint}. Got {value!r} instead."
        )


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x'?)`` for the closest known name, or an empty string."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def unknown_name(what: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """The one-line error for a name that is not registered."""
    known = sorted(known)
    return UnknownNameError(
        f"unknown {what} {name!r}; choose one of {', '.join(known)}{did_you_mean(name, known)}."
    )
