"""Errors and warnings of the solvers package.

Every user-input error is also a `ValueError` (scikit-learn's dual inheritance), so callers may
catch either the package's class or the builtin one. Messages are one line, from
:mod:`mpqvocab`'s template: `<subject>: <what is wrong, with the value>; <the fix>.`
"""

from __future__ import annotations

from collections.abc import Mapping

import mpqvocab
from mpqvocab import format_number

__all__ = [
    "ApproximateFrontierWarning",
    "BackendUnavailableError",
    "InfeasibleBudgetError",
    "InvalidParameterError",
    "SolverError",
    "SolverInputError",
    "TruncatedFrontierWarning",
    "UnknownNameError",
]


class SolverError(Exception):
    """Base class of every error raised by `solvers`."""


class SolverInputError(SolverError, ValueError):
    """A table, budget, tie, pin or parameter handed to `solvers` is invalid."""


class InvalidParameterError(SolverInputError, mpqvocab.InvalidParameterError):
    """A parameter of a public function has the wrong type or value."""


class UnknownNameError(SolverInputError, mpqvocab.UnknownNameError):
    """A column, layer, candidate or backend name that the tables or the solver do not know."""


def unknown_name(subject: str, kind: str, name: object, valid) -> UnknownNameError:
    """``<subject>: unknown <kind> 'x'; choose one of ...``, the vocabulary's message."""
    return mpqvocab.unknown_name(kind, name, valid, subject=subject, error=UnknownNameError)


class BackendUnavailableError(SolverError):
    """The requested ILP backend (HiGHS or CBC) is not installed."""


class InfeasibleBudgetError(SolverError, ValueError):
    """No allocation meets the budgets.

    Attributes:
        budget: Name of the cost column whose budget cannot be met.
        requested: The budget value that was asked for.
        smallest_achievable: The smallest value the column can take given `others`, the ties
            and the pinned layers.
        others: The other budgets that were kept while computing `smallest_achievable`.
    """

    def __init__(
        self,
        budget: str,
        requested: float,
        smallest_achievable: float,
        others: Mapping[str, float] | None = None,
    ) -> None:
        self.budget = budget
        self.requested = float(requested)
        self.smallest_achievable = float(smallest_achievable)
        self.others = dict(others or {})
        given = ", ".join(f"{name}<={format_number(limit)}" for name, limit in self.others.items())
        with_others = f" with {given}" if given else ""
        smallest = format_number(self.smallest_achievable)
        super().__init__(
            f"budget {budget}={format_number(self.requested)} cannot be met{with_others}: "
            f"the smallest achievable is {smallest}; "
            f"raise --budget {budget} to at least {smallest}."
        )


class ApproximateFrontierWarning(UserWarning):
    """The frontier returned is not the complete non-dominated set."""


class TruncatedFrontierWarning(ApproximateFrontierWarning):
    """The two-objective frontier exceeded `max_points`; the exact optima on a budget grid are
    returned instead of every non-dominated point."""
