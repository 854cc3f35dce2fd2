"""Warnings that point at the user's code, not at mpq's internals."""

from __future__ import annotations

import os
import sys
import warnings

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))  # the mpq package


def mpq_warn(message: str, category: type[Warning]) -> None:
    """Warn from the first stack frame outside the mpq package.

    (Python 3.12's ``skip_file_prefixes`` does this; mpq supports 3.11, so it counts frames.)
    """
    frame, stacklevel = sys._getframe(1), 2
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame, stacklevel = frame.f_back, stacklevel + 1
    warnings.warn(message, category, stacklevel=stacklevel)
