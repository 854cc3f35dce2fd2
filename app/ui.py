"""What every page shares: the sidebar (store and run pickers) and plain messages for an
empty store, a run in progress and a failed run."""

from __future__ import annotations

import os
import sys

import pandas as pd
import queries
import streamlit as st
import views

import mpq

DB_KEY = "db"
RUN_KEY = "run"


def current_db() -> str | None:
    """The store the dashboard started on (None: mpq's default store), or, started with
    ``--choose-store``, the one picked in the sidebar."""
    if not queries.store_choosable(sys.argv[1:]):
        return queries.db_from_args(sys.argv[1:], os.environ)
    return (st.session_state.get(DB_KEY) or "").strip() or None


def _where(db: str | None) -> str:
    return f"`{db}`" if db else "the default store (~/.cache/mpq/mpq.db)"


def _default_run(runs: pd.DataFrame) -> int:
    wanted = st.query_params.get(RUN_KEY)
    if wanted is not None and wanted.isdigit() and int(wanted) in set(runs["run"]):
        return int(wanted)
    done = runs[runs["status"] == "done"]
    return int((done if not done.empty else runs)["run"].max())


def sidebar() -> pd.DataFrame | None:
    """Draw the shared sidebar and read the store's run list.

    Returns:
        The run list (``mpq.list_runs`` columns), or None when the store cannot be read (the
        reason is shown in one line on the page).
    """
    choosable = queries.store_choosable(sys.argv[1:])
    if choosable and DB_KEY not in st.session_state:
        st.session_state[DB_KEY] = queries.db_from_args(sys.argv[1:], os.environ) or ""
    with st.sidebar:
        if choosable:
            st.text_input(
                "Store",
                key=DB_KEY,
                placeholder="~/.cache/mpq/mpq.db",
                help="A SQLite file or a SQLAlchemy URL (postgresql+psycopg://user@host/db); read only.",
            )
        else:  # no widget: nothing a page's visitor sends can change the store
            st.caption(
                f"Store: {views.plain(views.hide_password(current_db() or '~/.cache/mpq/mpq.db'))} (set by mpq "
                "dashboard --db; --choose-store lets the page pick another)"
            )
        st.button("Reload", on_click=queries.clear, help="Read the store again (new runs, runs that finished).")
    db = current_db()
    try:
        runs = queries.list_runs(db)
    except mpq.MpqError as exc:
        st.error(f"Cannot read the store: {views.plain(exc)}")
        return None
    except ImportError as exc:  # a URL whose database driver is not installed
        st.error(
            f"Cannot read the store: its database driver is missing ({views.plain(exc)}); "
            "install it, e.g. pip install 'mpq[postgres]' for PostgreSQL."
        )
        return None
    if runs.empty:
        return runs
    ids = [int(r) for r in runs.sort_values("run", ascending=False)["run"]]
    if st.session_state.get(RUN_KEY) not in ids:
        st.session_state[RUN_KEY] = _default_run(runs)
    with st.sidebar:
        run_id = st.selectbox("Run", ids, key=RUN_KEY, format_func=lambda r: views.run_label(r, runs))
    st.query_params[RUN_KEY] = str(run_id)
    return runs


def runs_or_stop() -> pd.DataFrame:
    """The run list; on an empty store, say so and stop the page."""
    runs = queries.list_runs(current_db())
    if runs.empty:
        st.info(
            f"No runs in {_where(current_db())} yet. Start one with `mpq search"
            f"{' --db ' + current_db() if current_db() else ''}`; it shows up here when you press Reload."
        )
        st.stop()
    return runs


def open_run(run_id: int, runs: pd.DataFrame) -> mpq.Run:
    """A run of the current store (cached once finished)."""
    finished_at = runs.loc[runs["run"] == run_id, "finished_at"].iloc[0]
    return queries.load_run(current_db(), run_id, finished_at)


def selected_run(runs: pd.DataFrame) -> mpq.Run:
    """The sidebar's run, when it is done; a run in progress or a failed run is described
    plainly and the page stops."""
    run = open_run(int(st.session_state[RUN_KEY]), runs)
    if run.status == "done" and not run.frontier.empty:
        return run
    record = run.record
    st.header(f"Run {run.id}: {views.plain(record['task_name'])} on {views.plain(run.target)}")
    started = f"{record['created_at']:%Y-%m-%d %H:%M} UTC"
    stored = ", ".join(sorted(run.tables)) or "nothing yet"
    if run.status == "running":
        st.info(
            f"Run {run.id} is still running (started {started}); stored so far: {stored}. "
            "Its frontier shows here when it finishes: press Reload."
        )
    elif run.status == "stopped":
        st.warning(
            f"Run {run.id} stopped without finishing (started {started}): the process running it "
            f"({views.plain(record['owner'])}) has ended. Stored so far: {stored}."
        )
        st.caption(f"`mpq search --resume {run.id}` (or the same search again) finishes it from there.")
    elif run.status == "failed":
        st.error(
            f"Run {run.id} failed (started {started}): {views.plain(record.get('error') or 'no error was recorded')}"
        )
        st.caption(
            f"Stored before it failed: {stored}. Fix the cause, then `mpq search --resume {run.id}` "
            "(or the same search again) finishes it from there."
        )
    else:
        st.warning(f"Run {run.id} has status {run.status!r} and no frontier points.")
    if "layers" in run.tables:
        layers = views.displayable(run.tables["layers"])
        st.dataframe(layers, hide_index=True, column_order=views.MODEL_LAYER_COLUMNS)
    st.stop()


def done_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The finished runs with frontier points, newest first."""
    return runs[(runs["status"] == "done") & (runs["points"] > 0)].sort_values("run", ascending=False)
