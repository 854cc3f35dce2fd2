"""Typed reads of a device file's TOML tables, with the file and key in every message.

Each cost model's spec record reads its fields through a :class:`FieldReader`; ``finish()``
then rejects keys nobody read, so a typo in a device file fails loudly with a did-you-mean.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import Any

from hwmodels._errors import DeviceSpecError
from mpqvocab import choices_hint

__all__ = ["FieldReader"]

_FIX_VALUE = "fix the value and keep its source comment."


class FieldReader:
    """Reads keys of one TOML table and remembers which ones were read.

    Args:
        table: The parsed TOML table.
        source: How messages name the file (``data/devices/zcu104.toml``).
        prefix: Dotted path of this table inside the file (``""`` at the top, ``"energy."``).
    """

    def __init__(self, table: Mapping[str, Any], source: str, prefix: str = "") -> None:
        self._table = table
        self._source = source
        self._prefix = prefix
        self._read: set[str] = set()

    @property
    def source(self) -> str:
        """How messages name the file."""
        return self._source

    def error(self, key: str, problem: str, fix: str = _FIX_VALUE) -> DeviceSpecError:
        """Build the one-line error for ``key``: ``<file>: '<key>' <problem>; <fix>``."""
        return DeviceSpecError(f"{self._source}: '{self._prefix}{key}' {problem}; {fix}")

    def has(self, key: str) -> bool:
        """Whether the table holds ``key``."""
        return key in self._table

    def _get(self, key: str, required: bool, what: str) -> Any:
        self._read.add(key)
        if key not in self._table:
            if required:
                typo = difflib.get_close_matches(key, [k for k in self._table if k not in self._read], n=1)
                found = f"; the file has '{self._prefix}{typo[0]}'" if typo else ""
                raise self.error(key, f"is missing (it must be {what}{found})", "add it with its source in a comment.")
            return None
        return self._table[key]

    def _number(self, key: str, what: str, ok, required: bool, integer: bool) -> Any:
        value = self._get(key, required, what)
        if value is None:
            return None
        is_number = isinstance(value, int) if integer else isinstance(value, (int, float))
        if isinstance(value, bool) or not is_number or not math.isfinite(value) or not ok(value):
            raise self.error(key, f"must be {what}, got {value!r}")
        return value if integer else float(value)

    def positive_int(self, key: str) -> int:
        """Read a required int > 0."""
        return self._number(key, "a positive int", lambda v: v > 0, True, True)

    def non_negative_int(self, key: str) -> int:
        """Read a required int >= 0."""
        return self._number(key, "a non-negative int", lambda v: v >= 0, True, True)

    def positive_float(self, key: str, required: bool = True) -> float | None:
        """Read a number > 0 (None when optional and absent)."""
        return self._number(key, "a positive number", lambda v: v > 0, required, False)

    def non_negative_float(self, key: str, required: bool = True) -> float | None:
        """Read a number >= 0 (None when optional and absent)."""
        return self._number(key, "a non-negative number", lambda v: v >= 0, required, False)

    def fraction(self, key: str) -> float:
        """Read a required number in (0, 1]."""
        return self._number(key, "a number in (0, 1]", lambda v: 0 < v <= 1, True, False)

    def string(self, key: str) -> str:
        """Read a required non-empty string."""
        value = self._get(key, True, "a non-empty string")
        if not isinstance(value, str) or not value.strip():
            raise self.error(key, f"must be a non-empty string, got {value!r}")
        return value

    def choice(self, key: str, choices: tuple[str, ...], default: str) -> str:
        """Read an optional string that must be one of ``choices`` (``default`` when absent)."""
        value = self._get(key, False, f"one of {', '.join(choices)}")
        if value is None:
            return default
        if value not in choices:
            raise self.error(
                key, f"must be one of {', '.join(choices)}, got {value!r}", f"use {choices_hint(value, choices)}."
            )
        return value

    def string_list(self, key: str) -> tuple[str, ...]:
        """Read a required non-empty list of distinct non-empty strings."""
        value = self._get(key, True, "a list of names")
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v.strip() for v in value):
            raise self.error(key, f"must be a non-empty list of names, got {value!r}")
        repeated = sorted({v for v in value if value.count(v) > 1})
        if repeated:
            raise self.error(key, f"lists {repeated[0]!r} twice", "keep each name once.")
        return tuple(value)

    def table(self, key: str, required: bool = True) -> FieldReader | None:
        """Open a sub-table as its own reader (None when optional and absent)."""
        value = self._get(key, required, "a table")
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.error(key, f"must be a table ([{self._prefix}{key}]), got {value!r}")
        return FieldReader(value, self._source, f"{self._prefix}{key}.")

    def rates(self, valid_keys: Iterable[str], what: str = "a positive number") -> Mapping[str, float]:
        """Read every key of this table as a positive number; keys must be in ``valid_keys``.

        Returns:
            A read-only mapping key -> value, in file order.
        """
        return self._mapping(valid_keys, what, integer=False)

    def positive_ints(self, valid_keys: Iterable[str], what: str = "a positive int") -> Mapping[str, int]:
        """Read every key of this table as an int > 0; keys must be in ``valid_keys``.

        Returns:
            A read-only mapping key -> value, in file order.
        """
        return self._mapping(valid_keys, what, integer=True)

    def _mapping(self, valid_keys: Iterable[str], what: str, integer: bool) -> Mapping[str, Any]:
        valid = list(valid_keys)
        out = {}
        for key in self._table:
            if key not in valid:
                raise self.error(key, "is not a known key", f"use one of {choices_hint(key, valid)}.")
            out[key] = self._number(key, what, lambda v: v > 0, True, integer)
        if not out:
            raise DeviceSpecError(
                f"{self._source}: table '{self._prefix.rstrip('.')}' is empty; "
                f"add at least one of {', '.join(valid)} with its source in a comment."
            )
        return MappingProxyType(out)

    def finish(self) -> None:
        """Reject keys of this table that no field read (typos, misplaced keys).

        Raises:
            DeviceSpecError: Naming the first unread key and the closest known one.
        """
        for key in self._table:
            if key not in self._read:
                known = choices_hint(key, sorted(self._read)) if self._read else "none"
                raise self.error(key, "is not a known key here", f"use one of {known}.")
