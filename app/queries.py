"""The dashboard's only access to a store: cached, read-only readers over ``mpq.list_runs`` and
``mpq.open_run``. Nothing here writes to the store."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

import pandas as pd
import streamlit as st

import mpq

#: Seconds a run list is reused before the store is read again (new runs show up by then).
RUN_LIST_TTL_S = 5


def db_from_args(argv: Sequence[str], environ: Mapping[str, str]) -> str | None:
    """The store the dashboard starts on: ``--db URL`` after ``streamlit run app.py --``, else
    ``$MPQ_DB``, else None (mpq's default store).

    Args:
        argv: The script's arguments (``sys.argv[1:]``); unknown ones are ignored.
        environ: The environment (``os.environ``).

    Returns:
        A SQLite path or SQLAlchemy URL, or None.
    """
    return _arguments(argv).db or environ.get("MPQ_DB") or None


def store_choosable(argv: Sequence[str]) -> bool:
    """Whether the page may choose another store than the one it started on (``--choose-store``):
    otherwise whoever reaches the page sees that store and nothing else."""
    return _arguments(argv).choose_store


def allowed_models(argv: Sequence[str]) -> list[str]:
    """The ``--model`` specs the operator allowed Build to rebuild (``--allow-model``, repeated)."""
    return _arguments(argv).allow_model


def _arguments(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--db")
    parser.add_argument("--choose-store", action="store_true")
    parser.add_argument("--allow-model", action="append", default=[])
    known, _ = parser.parse_known_args(list(argv))
    return known


@st.cache_data(ttl=RUN_LIST_TTL_S, show_spinner=False)
def list_runs(db: str | None) -> pd.DataFrame:
    """``mpq.list_runs(db)``, reused for :data:`RUN_LIST_TTL_S` seconds.

    Returns:
        One row per run: ``run``, ``status``, ``task``, ``target``, ``objectives``, ``points``,
        ``metric_name``, ``float_metric``, ``spearman``, ``created_at``, ``finished_at`` (UTC).

    Raises:
        StoreError: the store cannot be read (missing file, not an mpq store, unreachable).
    """
    return mpq.list_runs(db)


@st.cache_data(max_entries=64, show_spinner="Reading the run...")
def _finished_run(db: str | None, run_id: int, finished_at: str) -> mpq.Run:
    return mpq.open_run(db, run_id)


def load_run(db: str | None, run_id: int, finished_at: object) -> mpq.Run:
    """``mpq.open_run(db, run_id)``; a finished run is cached under its finish time, a run still
    in progress (``finished_at`` NaT/None) is read afresh each time.

    Args:
        db: The store.
        run_id: The run's id.
        finished_at: The run's ``finished_at`` from :func:`list_runs`.

    Raises:
        RunNotFoundError: no such run.
        StoreError: the store cannot be read.
    """
    if finished_at is None or pd.isna(finished_at):
        return mpq.open_run(db, run_id)
    return _finished_run(db, int(run_id), str(finished_at))


def clear() -> None:
    """Forget every cached read (the sidebar's reload button)."""
    list_runs.clear()
    _finished_run.clear()
