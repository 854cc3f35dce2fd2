"""Compare runs: several runs' frontiers on one chart (one model on GPU, FPGA and MCU targets, or
two models on one target), and the per-layer difference of two chosen points."""

import charts
import streamlit as st
import ui
import views

import mpq

runs = ui.runs_or_stop()
done = ui.done_runs(runs)
st.title("Compare runs")
if done.empty:
    st.info("No finished run to compare yet: runs still in progress or failed have no frontier.")
    st.stop()

ids = [int(r) for r in done["run"]]
if "compare_runs" not in st.session_state:  # start with the sidebar run's model on each of its targets
    current = runs[runs["run"] == st.session_state[ui.RUN_KEY]].iloc[0]
    same_model = done[done["task"] == current["task"]]
    first = [int(current["run"])] if current["run"] in ids else []
    others = same_model if not same_model.empty else done
    others = others[others["target"] != current["target"]] if first else others
    per_target = others.drop_duplicates("target")["run"]  # the newest run on each other target
    st.session_state["compare_runs"] = [*first, *map(int, per_target)][:4]
picked = st.multiselect("Runs", ids, key="compare_runs", format_func=lambda r: views.run_label(r, runs))
if not picked:
    st.info("Pick one or more runs to put on one chart.")
    st.stop()

chosen = {r: ui.open_run(r, runs) for r in picked}
axes = views.shared_axes(list(chosen.values()))
metric = views.metric_names(chosen.values())


def _axis_title(column: str) -> str:
    return charts.axis_title(column, metric)


x_col, y_col, log_col = st.columns([4, 4, 2])  # room for "log x" on a 1024 px page
x = x_col.selectbox(
    "x axis",
    axes,
    index=axes.index("latency_s") if "latency_s" in axes else 1,
    key="compare_x",
    format_func=_axis_title,
)
y = y_col.selectbox("y axis", axes, index=0, key="compare_y", format_func=_axis_title)
log_x = log_col.checkbox("log x", value=True, key="compare_log_x", help="Devices' costs differ by decades.")
frontiers = {views.run_label(r, runs): views.frontier_points(run) for r, run in chosen.items()}
st.plotly_chart(
    charts.compare_figure(
        frontiers,
        x=x,
        y=y,
        log_x=log_x,
        metric_name=metric,
        title=f"{len(chosen)} runs: {_axis_title(y)} against {_axis_title(x)}",
    ),
    key="compare_chart",
)

st.subheader("Per-layer difference of two points")
sides = {}
left, right = st.columns(2)
for side, column, default in (("a", left, 0), ("b", right, min(1, len(picked) - 1))):
    run_id = column.selectbox(
        f"Run {side.upper()}",
        ids,
        index=ids.index(picked[default]),
        key=f"diff_run_{side}",
        format_func=lambda r: views.run_label(r, runs),
    )
    run = chosen.get(run_id) or ui.open_run(run_id, runs)
    points = views.frontier_points(run).set_index("point")
    point = column.selectbox(
        f"Point {side.upper()}",
        list(points.index),
        index=list(points.index).index(views.best_point(run)),
        key=f"diff_point_{side}_{run_id}",
        format_func=lambda p, pts=points: f"{p} · {pts.loc[p, 'label']} · {pts.loc[p, 'formats']}",
    )
    sides[side] = (run, int(point))

(run_a, point_a), (run_b, point_b) = sides["a"], sides["b"]
try:
    diff = views.point_diff(run_a, point_a, run_b, point_b)
except mpq.exceptions.InvalidParameterError as exc:
    st.info(f"These two points cannot be compared layer by layer: {exc}")
    st.stop()
label_a, label_b = f"run {run_a.id} point {point_a}", f"run {run_b.id} point {point_b}"
changed = int(diff["changed"].sum())
st.caption(
    f"{changed} of {len(diff)} layers change format; weight bits change by "
    f"{diff['delta_weight_bits'].sum():+g} summed over layers."
)
st.plotly_chart(charts.layer_diff_figure(diff, label_a=label_a, label_b=label_b), key="diff_chart")
st.dataframe(
    diff,
    hide_index=True,
    column_order=["layer", "candidate_a", "candidate_b", "delta_weight_bits", "delta_act_bits"],
)
