"""The hwmodels error family (messages and did-you-mean come from :mod:`mpqvocab`).

Every message is one line: ``<subject>: <what is wrong, with the value>; <the fix>.``
"""

from __future__ import annotations

import mpqvocab

__all__ = [
    "DeviceSpecError",
    "HwModelError",
    "InvalidParameterError",
    "InvalidTableError",
    "LayerDoesNotFitError",
    "UnknownDeviceError",
]


class HwModelError(Exception):
    """Base class of every error the cost models raise."""


class UnknownDeviceError(HwModelError, ValueError):
    """A device name that no file in the device folder defines."""


class InvalidParameterError(HwModelError, mpqvocab.InvalidParameterError):
    """A parameter of a public function has the wrong type or value."""


class DeviceSpecError(HwModelError, ValueError):
    """A device file that is missing, unreadable or has a bad field."""


class InvalidTableError(HwModelError, ValueError):
    """A layers, candidates or measured-latency table that breaks its documented schema."""


class LayerDoesNotFitError(HwModelError, ValueError):
    """A layer that exceeds a device resource at every candidate the device runs."""
