"""The hwmodels error family and the one did-you-mean helper every message uses.

Every message is one line: ``<subject>: <what is wrong, with the value>; <the fix>.``
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "DeviceSpecError",
    "HwModelError",
    "InvalidTableError",
    "LayerDoesNotFitError",
    "UnknownDeviceError",
    "choices_hint",
    "did_you_mean",
]


class HwModelError(Exception):
    """Base class of every error the cost models raise."""


class UnknownDeviceError(HwModelError, ValueError):
    """A device name that no file in the device folder defines."""


class DeviceSpecError(HwModelError, ValueError):
    """A device file that is missing, unreadable or has a bad field."""


class InvalidTableError(HwModelError, ValueError):
    """A layers, candidates or measured-latency table that breaks its documented schema."""


class LayerDoesNotFitError(HwModelError, ValueError):
    """A layer that exceeds a device resource at every candidate the device runs."""


def choices_hint(name: str, valid: Iterable[str]) -> str:
    """Return ``"a, b, c (did you mean 'b'?)"`` for an unknown ``name`` among ``valid``.

    Args:
        name: The unknown name the user gave.
        valid: The names that would have been accepted, in the order to list them.

    Returns:
        The valid names joined by commas, followed by the closest match when there is one.
    """
    valid = list(valid)
    return ", ".join(valid) + did_you_mean(name, valid)


def did_you_mean(name: str, valid: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` with the closest of ``valid`` to ``name``, or ``""``.

    Args:
        name: The unknown name.
        valid: The accepted names.

    Returns:
        The hint, with a leading space, or an empty string when nothing is close. A valid name
        that starts with ``name`` wins (``h100`` -> ``h100-sxm``), then difflib's closest match.
    """
    valid = list(valid)
    close = [v for v in valid if v.startswith(name)] or difflib.get_close_matches(name, valid, n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""
