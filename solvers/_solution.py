"""The `Solution` record returned by `solve`, `frontier` and `refine`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Solution"]


@dataclass(frozen=True)
class Solution:
    """One allocation of a candidate to every layer.

    Attributes:
        assignment: Layer name -> candidate name, for every layer of the omega table, in the
            omega table's layer order.
        predicted_loss: Summed omega of the assignment (predicted loss increase, the omega
            table's unit).
        costs: Value of every numeric cost column of the cost table for this assignment: the
            sum over layers, or the maximum for max-aggregated columns (`sram_bytes` by default,
            `costs.attrs["max_columns"]` when set). Units are the columns' own
            (`latency_s` in seconds, `weight_bytes` in bytes, ...).
        optimal: True when the assignment is proven optimal for its budgets (for a frontier
            point: proven optimal for a budget equal to its own cost, hence non-dominated).
        status: `"optimal"`; `"feasible"` when an ILP backend stopped at its time limit with an
            unproven solution; `"measured"` for points returned by `refine`.
        measured_loss: The loss measured by `refine`'s objective function; None elsewhere.
    """

    assignment: dict[str, str]
    predicted_loss: float
    costs: dict[str, float]
    optimal: bool
    status: str = "optimal"
    measured_loss: float | None = None
