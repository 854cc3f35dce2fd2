"""mpq's bindings of the vocabulary's checks (``mpqvocab``) to mpq's error classes.

The constraints, the message template and did-you-mean live in ``mpqvocab``; here they raise
``mpq.exceptions.InvalidParameterError`` and ``UnknownNameError``, which are both ``MpqError``s.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import mpqvocab
from mpq.exceptions import InvalidParameterError, UnknownNameError
from mpqvocab import PATH, InstanceOf, Interval, OneOf

__all__ = ["PATH", "InstanceOf", "Interval", "OneOf", "check_param", "unknown_name"]


def check_param(func: str, name: str, value: Any, constraint: Interval | OneOf | InstanceOf) -> None:
    """Raise InvalidParameterError with the template when ``value`` breaks ``constraint``."""
    mpqvocab.check_param(func, name, value, constraint, error=InvalidParameterError)


def unknown_name(what: str, name: str, known: Iterable[str]) -> UnknownNameError:
    """The one-line error for a name that is not registered (known names listed sorted)."""
    return mpqvocab.unknown_name(what, name, sorted(known), error=UnknownNameError)
