"""User-measured latencies that override the cost model's ``latency_s``.

The table has one row per measured (layer, candidate) with columns ``layer``, ``candidate`` and
``latency_s`` (seconds per batch, measured at the batch size given to ``cost_table``); other
columns (a standard error, a device note) are ignored. ``mpq measure`` writes it as CSV.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pandas as pd

from hwmodels._errors import InvalidParameterError, InvalidTableError
from mpqvocab import PATH, check_param

__all__ = ["MEASURED_COLUMNS", "check_measured", "load_measured_latency"]

MEASURED_COLUMNS = ("layer", "candidate", "latency_s")
_FIX = "the table needs columns layer, candidate, latency_s (seconds), one row per measured pair"


def _check_columns(columns: Iterable[str], subject: str) -> None:
    columns = list(columns)
    missing = [c for c in MEASURED_COLUMNS if c not in columns]
    if missing:
        raise InvalidTableError(
            f"{subject}: missing column '{missing[0]}' (it has {', '.join(map(str, columns)) or 'none'}); {_FIX}."
        )


def _check_rows(rows: Iterable[tuple[int, Mapping]], subject: str) -> pd.DataFrame:
    records: list[tuple[str, str, float]] = []
    first_row: dict[tuple[str, str], int] = {}
    for number, row in rows:
        where = f"{subject}, row {number}"
        names = []
        for column in ("layer", "candidate"):
            value = row.get(column)
            if not isinstance(value, str) or not value.strip():
                raise InvalidTableError(f"{where}, column '{column}': {value!r} is not a name; fill in the {column}.")
            names.append(value.strip())
        raw = row.get("latency_s")
        try:
            latency = float(raw)
        except (TypeError, ValueError):
            latency = math.nan
        if isinstance(raw, bool) or not math.isfinite(latency) or latency <= 0:
            raise InvalidTableError(
                f"{where}, column 'latency_s': {raw!r} is not a positive number of seconds; "
                "fix the value or drop the row."
            )
        key = (names[0], names[1])
        if key in first_row:
            raise InvalidTableError(
                f"{where}: layer {key[0]!r} with candidate {key[1]!r} repeats row {first_row[key]}; "
                "keep one measurement per pair."
            )
        first_row[key] = number
        records.append((*key, latency))
    if not records:
        raise InvalidTableError(f"{subject}: has no rows; {_FIX}.")
    return pd.DataFrame(records, columns=list(MEASURED_COLUMNS))


def load_measured_latency(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Read a measured latency table from CSV.

    Args:
        csv_path: Path of a CSV file with a header row holding at least ``layer``,
            ``candidate`` and ``latency_s``.

    Returns:
        Columns ``layer`` (str), ``candidate`` (str) and ``latency_s`` (float, seconds), one
        row per data row of the file.

    Raises:
        InvalidTableError: If the file is missing or unreadable, a column is missing, a name is
            empty, a latency is not a positive finite number, or a pair repeats. The message
            names the file, the row (counting the header as row 1, as a spreadsheet does) and
            the column.

    Example:
        >>> import tempfile, pathlib
        >>> path = pathlib.Path(tempfile.mkdtemp()) / "measured.csv"
        >>> _ = path.write_text("layer,candidate,latency_s\\nfc1,w8a8,2.5e-05\\n")
        >>> load_measured_latency(path).latency_s.tolist()
        [2.5e-05]
    """
    check_param("load_measured_latency", "csv_path", csv_path, PATH, error=InvalidParameterError)
    path = Path(csv_path)
    subject = str(path)
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            _check_columns(reader.fieldnames or [], subject)
            rows = [(reader.line_num, row) for row in reader]
    except FileNotFoundError as exc:
        raise InvalidTableError(f"{subject}: measured latency file not found; check the path.") from exc
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidTableError(f"{subject}: cannot be read as CSV ({exc}); {_FIX}.") from exc
    return _check_rows(rows, subject)


def check_measured(measured: pd.DataFrame | str | os.PathLike) -> pd.DataFrame:
    """Return a checked measured table from a DataFrame or a CSV path.

    Args:
        measured: A DataFrame with the measured columns (rows are named by position, from 0)
            or a path to a CSV file (see :func:`load_measured_latency`).

    Returns:
        The checked table (``layer``, ``candidate``, ``latency_s``).

    Raises:
        InvalidTableError: As :func:`load_measured_latency`.
    """
    if isinstance(measured, (str, os.PathLike)):
        return load_measured_latency(measured)
    if not isinstance(measured, pd.DataFrame):
        raise InvalidTableError(f"measured: expected a DataFrame or a CSV path, got {type(measured).__name__}; {_FIX}.")
    _check_columns(measured.columns, "measured table")
    records = measured[list(MEASURED_COLUMNS)].to_dict("records")
    return _check_rows(enumerate(records), "measured table")
