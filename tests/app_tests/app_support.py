"""Paths and helpers the dashboard tests share (a plain module: conftest names are ambiguous)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import mpq

ROOT = Path(__file__).resolve().parents[2]
APP_DIR = ROOT / "app"
ENTRYPOINT = APP_DIR / "streamlit_app.py"
PAGES = ("app_pages/runs.py", "app_pages/frontier.py", "app_pages/calibration.py", "app_pages/compare.py")
FAST = mpq.ProbeSettings(tolerance=0.2, min_samples=4, max_samples=8)


def app_module(name: str) -> ModuleType:
    """Import one of app/'s modules (charts, views, exports...) by the name the app uses."""
    sys.path.insert(0, str(APP_DIR))
    try:
        return importlib.import_module(name)
    finally:
        sys.path.remove(str(APP_DIR))
