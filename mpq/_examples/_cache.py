"""Where built-in examples keep what they compute once (trained weights, reference outputs)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs


def cache_dir() -> Path:
    """``$MPQ_CACHE_DIR`` or the user cache directory (``~/.cache/mpq`` on Linux)."""
    path = Path(os.environ.get("MPQ_CACHE_DIR") or platformdirs.user_cache_dir("mpq"))
    path.mkdir(parents=True, exist_ok=True)
    return path
