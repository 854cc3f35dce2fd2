"""Checks of everything handed to the public functions, done once at their entry.

Each check raises `SolverInputError` (also a `ValueError`) with a one-line message of the form
`<subject>: <what is wrong, with the value>; <the fix>.`
"""

from __future__ import annotations

import logging
import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from mpqvocab import Interval, OneOf, check_param, format_number, parameter_message
from solvers._errors import InvalidParameterError, SolverInputError, unknown_name

__all__ = [
    "LOSS_NAMES",
    "Tables",
    "check_budgets",
    "check_choice",
    "check_costs",
    "check_fixed",
    "check_int",
    "check_objectives",
    "check_tables",
    "check_ties",
    "check_time_limit",
]

logger = logging.getLogger("solvers.inputs")

KEY_COLUMNS = ("layer", "candidate")
DEFAULT_MAX_COLUMNS = frozenset({"sram_bytes"})
# Names under which callers may list the loss among the objectives.
LOSS_NAMES = ("predicted_loss", "measured_loss", "loss")


@dataclass(frozen=True, eq=False)
class Tables:
    """The checked omega and cost tables, joined.

    Attributes:
        pairs: One row per (layer, candidate) present in both tables, in omega's row order;
            columns `layer`, `candidate`, `omega` and every cost column.
        layers: Layer names in order of first appearance in omega.
        cost_columns: Numeric cost columns of the cost table, in its column order.
        max_columns: The cost columns aggregated by maximum instead of sum.
    """

    pairs: pd.DataFrame
    layers: tuple[str, ...]
    cost_columns: tuple[str, ...]
    max_columns: frozenset[str]

    def candidates_of(self, layer: str) -> list[str]:
        """Candidates of `layer` present in both tables, in omega's order."""
        return self.pairs.loc[self.pairs["layer"] == layer, "candidate"].tolist()


def _check_frame(table: object, name: str, required: tuple[str, ...]) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise SolverInputError(
            f"{name}: expected a pandas DataFrame, got {type(table).__name__}; "
            f"pass a table with columns {', '.join(required)}."
        )
    missing = [column for column in required if column not in table.columns]
    if missing:
        raise SolverInputError(
            f"{name}: missing column(s) {', '.join(missing)} (has {', '.join(map(str, table.columns))}); "
            f"add them, one row per (layer, candidate)."
        )
    for column in KEY_COLUMNS:
        names = table[column]
        if pd.api.types.is_string_dtype(names) and not names.isna().any():
            continue
        bad = [value for value in names if not isinstance(value, str)]
        if bad:
            raise SolverInputError(
                f"{name}: column {column} holds {bad[0]!r} of type {type(bad[0]).__name__}; "
                f"use strings for layer and candidate names."
            )
    duplicated = table.duplicated(list(KEY_COLUMNS), keep=False)
    if duplicated.any():
        first = table.loc[duplicated].iloc[0]
        count = int(((table["layer"] == first["layer"]) & (table["candidate"] == first["candidate"])).sum())
        raise SolverInputError(
            f"{name}: pair (layer {first['layer']!r}, candidate {first['candidate']!r}) appears "
            f"{count} times; keep one row per (layer, candidate)."
        )
    return table


def _check_values(table: pd.DataFrame, name: str, columns: Iterable[str]) -> None:
    for column in columns:
        values = table[column].to_numpy(dtype=float)
        bad = ~np.isfinite(values)
        if name == "costs":
            bad |= values < 0
        if bad.any():
            first = int(np.argmax(bad))
            row = table.iloc[first]
            raise SolverInputError(
                f"{name}: column {column} is {format_number(values[first])} for (layer {row['layer']!r}, "
                f"candidate {row['candidate']!r}); give every row a finite value"
                f"{' >= 0' if name == 'costs' else ''} or drop the row."
            )


def check_tables(omega: object, costs: object) -> Tables:
    """Check the omega and cost tables and join them on (layer, candidate).

    Args:
        omega: Table with columns `layer`, `candidate`, `omega` (extra columns are ignored).
        costs: Table with columns `layer`, `candidate` and numeric cost columns (non-numeric
            extra columns are ignored); `costs.attrs["cost_columns"]`, when present, names the
            numeric columns that are costs (others, such as an FPGA folding, are ignored);
            `costs.attrs["max_columns"]` names the columns aggregated by maximum (default:
            `sram_bytes` when present).

    Returns:
        The joined `Tables`.

    Raises:
        SolverInputError: A table is not a DataFrame, lacks a column, holds a non-string name,
            a duplicated pair, a NaN/inf omega or a NaN/inf/negative cost; `max_columns` names
            an unknown column; or a layer of omega has no candidate in the cost table.
    """
    omega = _check_frame(omega, "omega", (*KEY_COLUMNS, "omega"))
    costs = _check_frame(costs, "costs", KEY_COLUMNS)
    if not pd.api.types.is_numeric_dtype(omega["omega"]) or pd.api.types.is_bool_dtype(omega["omega"]):
        raise SolverInputError(
            f"omega: column omega has dtype {omega['omega'].dtype}; store the predicted loss increase as floats."
        )
    cost_columns = tuple(
        column
        for column in costs.columns
        if column not in KEY_COLUMNS
        and isinstance(column, str)
        and pd.api.types.is_numeric_dtype(costs[column])
        and not pd.api.types.is_bool_dtype(costs[column])
    )
    declared_costs = costs.attrs.get("cost_columns")
    if declared_costs is not None:  # the cost model says which numeric columns are costs
        for column in declared_costs:
            if column not in cost_columns:
                raise unknown_name('costs.attrs["cost_columns"]', "cost column", column, cost_columns)
        cost_columns = tuple(c for c in cost_columns if c in set(declared_costs))
    if not cost_columns:
        raise SolverInputError(
            f"costs: no numeric cost column (has {', '.join(map(str, costs.columns))}); "
            f"add one such as latency_s or weight_bytes."
        )
    _check_values(omega, "omega", ["omega"])
    _check_values(costs, "costs", cost_columns)

    declared = costs.attrs.get("max_columns")
    if declared is None:
        max_columns = DEFAULT_MAX_COLUMNS & set(cost_columns)
    else:
        if isinstance(declared, str):
            declared = [declared]
        for column in declared:
            if column not in cost_columns:
                raise unknown_name('costs.attrs["max_columns"]', "cost column", column, cost_columns)
        max_columns = frozenset(declared)

    pairs = omega[[*KEY_COLUMNS, "omega"]].merge(
        costs[[*KEY_COLUMNS, *cost_columns]], on=list(KEY_COLUMNS), how="inner", sort=False
    )
    layers = tuple(pd.unique(omega["layer"]))
    present = set(pairs["layer"].unique())  # unique first: iterating every row is slow at MoE scale
    for layer in layers:
        if layer not in present:
            offered = omega.loc[omega["layer"] == layer, "candidate"].tolist()
            raise SolverInputError(
                f"costs: layer {layer!r} has no row for any of its candidates "
                f"({', '.join(offered)}); add its cost rows or drop the layer from omega."
            )
    ignored = set(costs["layer"].unique()) - set(layers)
    if ignored:
        logger.debug("cost rows of %d layers absent from omega are ignored", len(ignored))
    return Tables(
        pairs=pairs.reset_index(drop=True),
        layers=layers,
        cost_columns=cost_columns,
        max_columns=frozenset(max_columns),
    )


def check_budgets(budgets: Mapping[str, float] | None, tables: Tables) -> dict[str, float]:
    """Check budget names against the cost columns and their values.

    Returns:
        Budget name -> limit as float, in the order given.

    Raises:
        SolverInputError: Unknown column (with the closest name), or a value that is not a
            positive finite number.
    """
    if budgets is None:
        return {}
    if not isinstance(budgets, Mapping):
        raise SolverInputError(
            f"budgets: expected a mapping of cost column to limit, got {type(budgets).__name__}; "
            f"pass e.g. {{'weight_bytes': 2e6}}."
        )
    checked = {}
    for name, limit in budgets.items():
        if name not in tables.cost_columns:
            raise unknown_name("budgets", "cost column", name, tables.cost_columns)
        if not _positive_finite(limit):
            raise SolverInputError(
                f"budgets: {name} must be a positive finite number, got {limit!r}; pass the "
                f"limit in the column's unit, or leave the budget out."
            )
        checked[name] = float(limit)
    return checked


def check_objectives(objectives: object, tables: Tables, *, at_most: int = 2) -> tuple[str, ...]:
    """Check a frontier/refine objective list and return its cost columns.

    The loss is always the first objective; it may be listed by one of `LOSS_NAMES` or left
    out, so `["latency_s"]` and `["predicted_loss", "latency_s"]` mean the same.

    Raises:
        SolverInputError: Not a list of names, unknown or repeated column, a max-aggregated
            column, or a number of cost columns other than 1..`at_most`.
    """
    if isinstance(objectives, str) or not isinstance(objectives, Iterable):
        raise SolverInputError(f"objectives: expected a list of names, got {objectives!r}; pass e.g. ['latency_s'].")
    columns = [name for name in objectives if name not in LOSS_NAMES]
    for name in columns:
        if name not in tables.cost_columns:
            raise unknown_name("objectives", "cost column", name, tables.cost_columns)
        if name in tables.max_columns:
            raise SolverInputError(
                f"objectives: {name} aggregates by maximum, which a summed frontier cannot trade; "
                f"pass it as a budget instead (budgets={{{name!r}: limit}})."
            )
    if not 1 <= len(columns) <= at_most or len(set(columns)) != len(columns):
        raise SolverInputError(
            f"objectives: need 1 to {at_most} distinct cost columns besides the loss, got "
            f"{list(objectives)!r}; pass e.g. ['predicted_loss', 'latency_s']."
        )
    return tuple(columns)


def check_ties(ties: object, tables: Tables) -> list[list[str]]:
    """Check tie groups: each an iterable of known layer names (not a bare string)."""
    if isinstance(ties, str) or not isinstance(ties, Iterable):
        raise SolverInputError(f"ties: expected a list of layer groups, got {ties!r}; pass e.g. [['a', 'b']].")
    groups = []
    known = set(tables.layers)  # a tuple's `in` would scan 18,432 MoE layers per tied layer
    for group in ties:
        if isinstance(group, str) or not isinstance(group, Iterable):
            raise SolverInputError(f"ties: group {group!r} is not a list of layer names; pass e.g. [['a', 'b']].")
        group = list(group)
        for layer in group:
            if layer not in known:
                raise unknown_name("ties", "layer", layer, tables.layers)
        groups.append(group)
    return groups


def check_fixed(fixed: object, tables: Tables, subject: str = "fixed") -> dict[str, str]:
    """Check pinned layers (or, as `subject`, a configuration): known layer -> one of that layer's candidates."""
    if fixed is None:
        return {}
    if not isinstance(fixed, Mapping):
        raise SolverInputError(
            f"{subject}: expected a mapping of layer to candidate, got {type(fixed).__name__}; pass e.g. {{'fc1': 'int8'}}."
        )
    known = set(tables.layers)
    offered = set(zip(tables.pairs["layer"], tables.pairs["candidate"]))  # once: a lookup per pin
    for layer, candidate in fixed.items():
        if layer not in known:
            raise unknown_name(subject, "layer", layer, tables.layers)
        if (layer, candidate) not in offered:
            raise unknown_name(f"{subject}[{layer!r}]", "candidate", candidate, tables.candidates_of(layer))
    return dict(fixed)


def check_choice(func: str, name: str, value: object, valid: tuple[str, ...]) -> str:
    """Check that `value` is one of `valid`."""
    check_param(func, name, value, OneOf(valid), error=InvalidParameterError)
    return str(value)


def check_int(func: str, name: str, value: object, minimum: int) -> int:
    """Check that `value` is an int >= `minimum` (scikit-learn's parameter template)."""
    check_param(func, name, value, Interval(int, minimum, None), error=InvalidParameterError)
    return int(value)


def check_costs(func: str, name: str, values: object) -> list[float]:
    """Check a collection of finite, non-negative costs."""
    if isinstance(values, str) or not isinstance(values, Iterable):
        raise InvalidParameterError(parameter_message(func, name, "a list of finite costs >= 0", values))
    values = list(values)
    for value in values:
        check_param(
            func,
            f"{name}[{values.index(value)}]",
            value,
            Interval(float, 0, math.inf, closed="left"),
            error=InvalidParameterError,
        )
    return [float(v) for v in values]


def _positive_finite(value: object) -> bool:
    """A real number (not a bool), finite and above zero."""
    return not isinstance(value, bool) and isinstance(value, numbers.Real) and math.isfinite(value) and value > 0


def check_time_limit(func: str, value: object) -> float | None:
    """Check an optional time limit in seconds."""
    if value is None:
        return None
    if not _positive_finite(value):
        raise InvalidParameterError(
            parameter_message(func, "time_limit_s", "a positive finite number of seconds or None", value)
        )
    return float(value)
