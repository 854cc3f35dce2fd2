"""Errors and warnings of the solvers package.

Every user-input error is also a `ValueError` (scikit-learn's dual inheritance), so callers may
catch either the package's class or the builtin one. Messages are one line:
`<subject>: <what is wrong, with the value>; <the fix>.`
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping

__all__ = [
    "ApproximateFrontierWarning",
    "BackendUnavailableError",
    "InfeasibleBudgetError",
    "SolverError",
    "SolverInputError",
    "TruncatedFrontierWarning",
]


class SolverError(Exception):
    """Base class of every error raised by `solvers`."""


class SolverInputError(SolverError, ValueError):
    """A table, budget, tie, pin or parameter handed to `solvers` is invalid."""


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


def format_number(value: float) -> str:
    """Shortest text that reads back as `value` exactly (integers without a trailing `.0`)."""
    value = float(value)
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def unknown_name(subject: str, kind: str, name: object, valid: Iterable[str]) -> SolverInputError:
    """Error for a name that is not one of `valid`, listing them and the closest match."""
    valid = list(valid)
    close = difflib.get_close_matches(str(name), valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return SolverInputError(
        f"{subject}: unknown {kind} {name!r}; choose one of {', '.join(valid)}{hint}."
    )
