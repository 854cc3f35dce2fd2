"""The two user-input errors every package's checks raise.

Each package subclasses them with its own base (``mpq.exceptions.MpqError``,
``solvers.SolverError``, ``hwmodels.HwModelError``), so a caller may catch the package's class,
the vocabulary's, or ``ValueError``.
"""

from __future__ import annotations

__all__ = ["InvalidParameterError", "UnknownNameError"]


class InvalidParameterError(ValueError):
    """A parameter of a public function has the wrong type or value."""


class UnknownNameError(ValueError):
    """A name (format, candidate, device, column...) is not one of the known ones."""
