"""`price`: the predicted loss and costs of one given configuration, without solving anything."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from solvers._errors import SolverInputError
from solvers._inputs import check_fixed, check_tables
from solvers._solution import Solution

__all__ = ["price"]


def price(omega: pd.DataFrame, costs: pd.DataFrame, assignment: Mapping[str, str]) -> Solution:
    """The summed omega and every cost of one configuration (layer -> candidate).

    The same sums `solve` reports for its optimum (summed columns add over layers,
    `costs.attrs["max_columns"]` take the maximum), read off the tables: no model is built,
    so pricing a configuration costs a table lookup, not a solve with every layer pinned.

    Args:
        omega: Omega table (see `solvers.solve`).
        costs: Cost table (see `solvers.solve`).
        assignment: Layer -> candidate for every layer of the omega table.

    Returns:
        A `Solution` with `status="priced"`, `optimal=False` and `gap=None`: it is the
        configuration asked for, not an optimum of anything; its assignment in omega's layer
        order.

    Raises:
        SolverInputError: Invalid tables, an unknown layer or candidate, or a layer of the
            omega table the assignment leaves out.

    Example:
        >>> import pandas as pd, solvers
        >>> omega = pd.DataFrame({"layer": ["a", "a", "b", "b"], "candidate": ["int4", "int8"] * 2,
        ...                       "omega": [0.4, 0.1, 0.3, 0.2]})
        >>> costs = omega[["layer", "candidate"]].assign(weight_bytes=[50, 100, 50, 100])
        >>> solvers.price(omega, costs, {"a": "int8", "b": "int4"}).costs
        {'weight_bytes': 150.0}
    """
    tables = check_tables(omega, costs)
    assignment = check_fixed(assignment, tables, subject="assignment")
    missing = [layer for layer in tables.layers if layer not in assignment]
    if missing:
        raise SolverInputError(
            f"assignment: no candidate for layer(s) {', '.join(map(repr, missing[:3]))}"
            f"{' and more' if len(missing) > 3 else ''}; give every layer of the omega table a candidate."
        )
    ordered = {layer: assignment[layer] for layer in tables.layers}
    chosen = pd.DataFrame({"layer": list(ordered), "candidate": list(ordered.values())})
    rows = chosen.merge(tables.pairs, on=["layer", "candidate"], how="left", sort=False)
    return Solution(
        assignment=ordered,
        predicted_loss=float(rows["omega"].sum()),
        costs={
            column: float(rows[column].max() if column in tables.max_columns else rows[column].sum())
            for column in tables.cost_columns
        },
        optimal=False,
        status="priced",
        gap=None,
    )
