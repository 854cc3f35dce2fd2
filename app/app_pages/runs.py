"""Runs: every run of the store, filtered by model, target, status and date; pick one to inspect."""

from functools import partial

import streamlit as st
import ui
import views

st.title("Runs")
runs = ui.runs_or_stop()

counts = runs["status"].value_counts()
for column, status in zip(st.columns(5), ("all", "done", "running", "stopped", "failed")):
    column.metric(f"{status} runs", len(runs) if status == "all" else int(counts.get(status, 0)))

model_col, target_col, status_col, date_col = st.columns(4)
tasks = model_col.multiselect("Model", sorted(runs["task"].unique()), key="filter_tasks")
targets = target_col.multiselect("Target", sorted(runs["target"].unique()), key="filter_targets")
statuses = status_col.multiselect("Status", ["done", "running", "stopped", "failed"], key="filter_statuses")
first, last = runs["created_at"].min().date(), runs["created_at"].max().date()
picked = date_col.date_input("Created (UTC)", value=(first, last), min_value=first, max_value=last, key="filter_dates")
dates = (picked[0], picked[-1] if len(picked) == 2 else last) if picked else None

shown = views.filter_runs(runs, tasks=tasks, targets=targets, statuses=statuses, dates=dates)


def _open_selected(ids: list[int]) -> None:
    rows = st.session_state["runs_table"].selection.rows
    if rows and rows[0] < len(ids):
        st.session_state[ui.RUN_KEY] = ids[rows[0]]


st.dataframe(
    shown,
    key="runs_table",
    hide_index=True,
    column_order=views.RUN_COLUMNS,
    on_select=partial(_open_selected, shown["run"].tolist()),
    selection_mode="single-row",
    column_config={
        "run": st.column_config.NumberColumn("run", format="%d"),
        "float_metric": st.column_config.NumberColumn("float32 metric", format="%.4f"),
        "spearman": st.column_config.NumberColumn(
            "Spearman", format="%.3f", help="Rank correlation of predicted loss with the measured metric drop."
        ),
        "created_at": st.column_config.DatetimeColumn("created (UTC)", format="YYYY-MM-DD HH:mm"),
        "finished_at": st.column_config.DatetimeColumn("finished (UTC)", format="YYYY-MM-DD HH:mm"),
    },
)
st.caption(
    f"{len(shown)} of {len(runs)} runs shown. Select a row to make it the sidebar's run; "
    "Show/hide columns in the table's toolbar adds points, metric, Spearman, times and owner."
)
run_id = st.session_state[ui.RUN_KEY]
st.page_link(
    "app_pages/frontier.py",
    label=f"Inspect {views.plain(views.run_label(run_id, runs))}",
    icon=":material/arrow_forward:",
)
