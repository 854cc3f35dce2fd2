"""Checks of the tables cost_table receives, and the (layer, candidate) pairs it costs.

The layers table (one row per layer, model order) and the candidates table (one row per
candidate) are documented in :func:`hwmodels.cost_table`. Each check raises one line naming the
table, the row and the column.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
import pandas as pd

from hwmodels._errors import InvalidParameterError, InvalidTableError
from mpqvocab import LAYER_COLUMNS, Interval, UnknownNameError, arith_class, check_param, choices_hint, format_spec

__all__ = ["LAYER_KINDS", "candidate_classes", "check_batch_size", "check_candidates", "check_layers", "make_pairs"]

LAYER_KINDS = ("linear", "conv1d", "conv2d", "embedding")
_SHAPE_DIMS = {"linear": 2, "conv1d": 3, "conv2d": 4, "embedding": 2}
# column -> smallest allowed value
_LAYER_COUNTS = {
    "weight_params": 1,
    "bias_params": 0,
    "macs": 0,
    "in_elems": 1,
    "out_elems": 1,
    "groups": 1,
}
_CANDIDATE_COLUMNS = ("candidate", "weight_format", "act_format", "weight_bits", "act_bits")
_LAYERS_FIX = "pass the layer table mpq.layers() returns (documented in hwmodels.cost_table)"
_CANDIDATES_FIX = "pass the candidate table mpq builds (documented in hwmodels.cost_table)"


def _is_int(value: object) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, numbers.Integral):
        return True
    return isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer()


def _check_frame(table: object, name: str, columns: tuple[str, ...], fix: str) -> pd.DataFrame:
    if not isinstance(table, pd.DataFrame):
        raise InvalidTableError(f"{name} table: expected a pandas DataFrame, got {type(table).__name__}; {fix}.")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise InvalidTableError(
            f"{name} table: missing column '{missing[0]}' (it has {', '.join(map(str, table.columns)) or 'none'}); "
            f"{fix}."
        )
    if table.empty:
        raise InvalidTableError(f"{name} table: has no rows; {fix}.")
    return table.reset_index(drop=True)


def _check_names(values: pd.Series, name: str, column: str) -> list[str]:
    names = list(values)
    for i, value in enumerate(names):
        if not isinstance(value, str) or not value:
            raise InvalidTableError(
                f"{name} table: row {i}, column '{column}' must be a non-empty string, got {value!r}; fix the name."
            )
    seen: dict[str, int] = {}
    for i, value in enumerate(names):
        if value in seen:
            raise InvalidTableError(
                f"{name} table: {column} {value!r} appears in rows {seen[value]} and {i}; keep one row per {column}."
            )
        seen[value] = i
    return names


def check_layers(layers: object) -> pd.DataFrame:
    """Check the layers table and return it with a fresh index and int64 count columns.

    Args:
        layers: The table to check.

    Returns:
        A copy with a 0..n-1 index and the count columns as ``int64``.

    Raises:
        InvalidTableError: Missing column, empty table, duplicate or empty layer name, unknown
            kind, a count that is negative, zero where it must be positive, or not an integer, or
            a ``weight_shape`` whose product is not ``weight_params``.
    """
    table = _check_frame(layers, "layers", LAYER_COLUMNS, _LAYERS_FIX).copy()
    names = _check_names(table["layer"], "layers", "layer")
    for name, kind in zip(names, table["kind"]):
        if kind not in LAYER_KINDS:
            raise InvalidTableError(
                f"layers table: layer {name!r} has kind {kind!r}; use one of {choices_hint(str(kind), LAYER_KINDS)}."
            )
    for column, minimum in _LAYER_COUNTS.items():
        for name, value in zip(names, table[column]):
            if not _is_int(value) or value < minimum:
                what = "a positive int" if minimum else "a non-negative int"
                raise InvalidTableError(
                    f"layers table: column '{column}' of layer {name!r} must be {what}, got {value!r}; {_LAYERS_FIX}."
                )
        table[column] = table[column].astype("int64")
    for name, kind, shape, params in zip(names, table["kind"], table["weight_shape"], table["weight_params"]):
        dims = _SHAPE_DIMS[kind]
        if not isinstance(shape, (tuple, list)) or len(shape) != dims or not all(_is_int(d) and d > 0 for d in shape):
            raise InvalidTableError(
                f"layers table: 'weight_shape' of {kind} layer {name!r} must be a tuple of {dims} positive ints, "
                f"got {shape!r}; {_LAYERS_FIX}."
            )
        if math.prod(int(d) for d in shape) != params:
            raise InvalidTableError(
                f"layers table: 'weight_shape' {tuple(shape)} of layer {name!r} holds {math.prod(shape)} weights "
                f"but 'weight_params' is {params}; fix one of the two."
            )
    table["weight_shape"] = [tuple(int(d) for d in s) for s in table["weight_shape"]]
    return table


def check_candidates(candidates: object) -> pd.DataFrame:
    """Check the candidates table and add the arithmetic class of each format.

    Args:
        candidates: The table to check.

    Returns:
        A copy with a fresh index, float ``weight_bits``/``act_bits`` and two added columns
        ``weight_class`` and ``act_class`` (``int4``, ``fp8``, ``fp16``, ...).

    Raises:
        InvalidTableError: Missing column, empty table, duplicate name, unknown format (with
            did-you-mean), or bits that are not a finite number at least the format's width.
    """
    table = _check_frame(candidates, "candidates", _CANDIDATE_COLUMNS, _CANDIDATES_FIX).copy()
    names = _check_names(table["candidate"], "candidates", "candidate")
    for operand in ("weight", "act"):
        classes = []
        for name, fmt, bits in zip(names, table[f"{operand}_format"], table[f"{operand}_bits"]):
            cls = _format_class(fmt, subject=f"candidates table: candidate {name!r}, column '{operand}_format'")
            width = arith_class(cls).bits
            if (
                isinstance(bits, (bool, np.bool_))
                or not isinstance(bits, numbers.Real)
                or not math.isfinite(bits)
                or bits < width
            ):
                raise InvalidTableError(
                    f"candidates table: '{operand}_bits' of candidate {name!r} is {bits!r}, not a number of at least "
                    f"the {width} bits of its format {fmt!r}; count the bits per value including shared scales."
                )
            classes.append(cls)
        table[f"{operand}_class"] = classes
        table[f"{operand}_bits"] = table[f"{operand}_bits"].astype("float64")
    return table


def check_batch_size(batch_size: object) -> int:
    """Check that ``batch_size`` is a positive int.

    Raises:
        InvalidParameterError: Otherwise.
    """
    check_param("cost_table", "batch_size", batch_size, Interval(int, 1, None), error=InvalidParameterError)
    return int(batch_size)


def _format_class(fmt: object, *, subject: str) -> str:
    """The arithmetic class of a catalogue format; an unknown one is a bad table."""
    try:
        return format_spec(str(fmt), subject=subject).arith_class
    except UnknownNameError as exc:
        raise InvalidTableError(str(exc)) from None


def make_pairs(layers: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """Cross the checked tables: one row per (layer, candidate), layer order then candidate order.

    Args:
        layers: Output of :func:`check_layers`.
        candidates: Output of :func:`check_candidates`, already restricted to the device's.

    Returns:
        Every column of both tables, with a 0..n-1 index.
    """
    n_layers, n_cands = len(layers), len(candidates)
    left = layers.iloc[np.repeat(np.arange(n_layers), n_cands)].reset_index(drop=True)
    right = candidates.iloc[np.tile(np.arange(n_cands), n_layers)].reset_index(drop=True)
    extra = [c for c in right.columns if c not in left.columns]
    return pd.concat([left, right[extra]], axis=1)


def candidate_classes(pairs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """The distinct candidates of ``pairs`` as ``(candidate, weight_class, act_class)``, in order."""
    columns = ["candidate", "weight_class", "act_class"]
    return list(pairs[columns].drop_duplicates("candidate").itertuples(index=False, name=None))
