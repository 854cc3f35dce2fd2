"""Predicted vs measured: does the predicted loss rank points as their measured metric does?
A scatter per run with its Spearman correlation, and every run's correlation in a table."""

import charts
import streamlit as st
import ui
import views

runs = ui.runs_or_stop()
run = ui.selected_run(runs)
record = run.record

st.title(f"Predicted vs measured: run {run.id}, {views.plain(record['task_name'])} on {views.plain(run.target)}")
points = views.calibration_points(run)
if points.empty:
    st.info(f"Run {run.id} was not validated (searched with --no-validate), so it has no measured metric to compare.")
else:
    st.plotly_chart(
        charts.calibration_figure(
            points,
            metric_name=record["metric_name"],
            spearman=record.get("spearman"),
            title=f"Run {run.id}: predicted loss against measured drop",
        ),
        key=f"calibration_{run.id}",
    )
    st.caption(
        f"{len(points)} points; a rank correlation near 1 means the predicted loss orders the points as the "
        f"measured {record['metric_name']} does, so the frontier's order can be trusted."
        + (f" Here: {run.rank_note}." if run.rank_note else "")
    )

st.subheader("Every run")
st.dataframe(
    ui.done_runs(runs)[["run", "task", "target", "objectives", "points", "metric_name", "float_metric", "spearman"]],
    hide_index=True,
    column_order=["run", "task", "target", "objectives", "points", "spearman"],
    column_config={
        "spearman": st.column_config.NumberColumn("Spearman", format="%.3f"),
        "float_metric": st.column_config.NumberColumn("float32 metric", format="%.4f"),
    },
)
