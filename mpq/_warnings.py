"""Warnings that point at the user's code, not at mpq's internals."""

from __future__ import annotations

import os
import warnings

import mpq

_PACKAGE_DIR = os.path.dirname(mpq.__file__)


def mpq_warn(message: str, category: type[Warning]) -> None:
    """Warn from the first stack frame outside the mpq package."""
    warnings.warn(message, category, skip_file_prefixes=(_PACKAGE_DIR,))
