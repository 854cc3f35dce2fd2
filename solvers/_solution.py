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
            point: proven optimal for a budget equal to its own cost, hence non-dominated);
            for the solvers' results, exactly when `gap == 0.0`.
        status: `"optimal"`; `"feasible"` when the optimality is not proven (an ILP backend
            stopped at its time limit, or a frontier point's dynamic programme outgrew its
            cap; `gap` bounds how far from optimal); `"measured"` for points returned by
            `refine`; `"priced"` for a configuration `price` was given.
        measured_loss: The loss measured by `refine`'s objective function; None elsewhere.
        gap: Proven bound on how far `predicted_loss` lies above the least predicted loss
            within the same budgets (for a frontier point: within its own cost; for a
            three-objective point: of the weighted loss it minimised), in the omega
            table's unit: 0.0 when proven optimal (a DP or Lagrangian certificate, or the
            ILP backend's proof), else the distance to a Lagrangian (LP) lower bound. None
            where no bound is known (`refine`'s measured points, Solutions built by hand).
    """

    assignment: dict[str, str]
    predicted_loss: float
    costs: dict[str, float]
    optimal: bool
    status: str = "optimal"
    measured_loss: float | None = None
    gap: float | None = None
