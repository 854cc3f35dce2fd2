"""Frontier: a run's frontier on any two objectives with its measured metric, and the selected
point's per-layer formats beside the layer table (sensitivity, omega, cost), with exports."""

import sys

import charts
import exports
import pandas as pd
import queries
import streamlit as st
import ui
import views

import mpq

runs = ui.runs_or_stop()
run = ui.selected_run(runs)
record = run.record
metric = record["metric_name"]

st.title(f"Run {run.id}: {views.plain(record['task_name'])} on {views.plain(run.target)}")
facts = [
    f"objectives {', '.join(run.objectives)}",
    f"budgets {record.get('budgets') or 'none'}",
    f"created {record['created_at']:%Y-%m-%d %H:%M} UTC",
]
if record.get("float_metric") is not None:
    facts.append(f"float32 {metric} {record['float_metric']:.4f}")
facts.append(run.quantizer.summary())
if run.rank_note is not None:
    facts.append(run.rank_note)
st.caption(" · ".join(facts))

points = views.frontier_points(run)
choices = views.axis_choices(run)
x_col, y_col = st.columns(2)
x = x_col.selectbox("x axis", choices, index=0, key=f"x_{run.id}", format_func=charts.axis_title)
y = y_col.selectbox(
    "y axis", choices, index=choices.index("predicted_loss"), key=f"y_{run.id}", format_func=charts.axis_title
)

point_key, chart_key = f"point_{run.id}", f"frontier_chart_{run.id}"
if point_key not in st.session_state:
    st.session_state[point_key] = views.best_point(run)


def _select_from_chart() -> None:
    picked = views.point_from_selection(st.session_state[chart_key]["selection"])
    if picked is not None:
        st.session_state[point_key] = picked


figure = charts.frontier_figure(
    points,
    x=x,
    y=y,
    metric_name=metric,
    float_metric=record.get("float_metric"),
    selected=st.session_state[point_key],
    hover=run.objectives,
    title=f"Frontier of run {run.id}: click a point",
)
st.plotly_chart(figure, key=chart_key, on_select=_select_from_chart, selection_mode="points")

labels = points.set_index("point")


def _point_label(p: int) -> str:
    row = labels.loc[p]
    measured = "-" if pd.isna(row["measured_metric"]) else f"{row['measured_metric']:.4f}"
    return f"{p} · {row['label']} · predicted loss {row['predicted_loss']:.3g} · {metric} {measured} · {row['formats']}"


point = st.selectbox("Point", [int(p) for p in points["point"]], key=point_key, format_func=_point_label)

st.subheader(f"Point {point}: formats per layer")
view = views.layer_view(run, point)
colors = charts.format_colors(views.run_formats(run))
st.plotly_chart(
    charts.layer_bits_figure(view, colors=colors, title=f"Bits per layer, point {point}"), key=f"bits_{run.id}"
)
# The full layer table (formats, sensitivity, every cost) is wider than a laptop's page: a few
# columns show, the table's toolbar (Show/hide columns) brings back the others.
st.dataframe(
    view,
    hide_index=True,
    column_order=views.layer_columns(run.objectives),
    column_config={
        c: st.column_config.NumberColumn(charts.axis_title(c), format="%.3g")
        for c in view.columns
        if c.startswith("sensitivity_") or c in ("omega", "latency_s", "energy_j")
    },
)
st.caption("More per layer (kind, size, formats, sensitivity, every cost): Show/hide columns in the table's toolbar.")

st.subheader("Export")


def download(column, fmt: str, name: str, mime: str, data: str | bytes) -> None:
    """The download button of one export format, the same for a document and a model file."""
    column.download_button(
        f"Download {fmt}",
        data,
        file_name=name,
        mime=mime,
        key=f"export_{fmt}",
        on_click="ignore",
        icon=":material/download:",
    )


def model_file_column(column, fmt: str) -> None:
    """A model file (ONNX, QONNX): the model is rebuilt (seconds), so it is built when asked and
    kept per point; then its download, mpq's notes on it, or mpq's refusal."""
    allowed = queries.allowed_models(sys.argv[1:])
    if not run.model_spec_allowed(allowed):
        # Disabled, and its value never read: no visitor of the page makes the server import a file.
        column.button(f"Build {fmt}", key=f"build_{fmt}", icon=":material/build:", disabled=True)
        column.caption(f"{fmt}: {views.plain(exports.build_unavailable(run))}")
        return
    built = st.session_state.setdefault("model_files", {})
    key = (run.db, run.id, point, fmt)
    if column.button(f"Build {fmt}", key=f"build_{fmt}", icon=":material/build:"):
        with st.spinner(f"Exporting point {point} to {fmt}..."):
            try:
                built[key] = exports.model_file(run, point, fmt, allowed)
            except mpq.exceptions.MpqError as exc:  # float formats in QONNX, a model spec moved since the search
                built[key] = str(exc)
    if isinstance(built.get(key), str):
        column.caption(f"{fmt}: {views.plain(built[key])}")
    elif key in built:
        name, mime, data, notes = built[key]
        download(column, fmt, name, mime, data)
        for note in notes:
            column.caption(f"{fmt}: {note}")


contents = {}
for column, fmt in zip(st.columns(len(exports.EXPORT_FORMATS)), exports.EXPORT_FORMATS):
    if fmt in exports.MODEL_FILES:
        model_file_column(column, fmt)
        continue
    try:
        name, mime, contents[fmt] = exports.export_file(run, point, fmt)
    except mpq.exceptions.InvalidParameterError as exc:  # e.g. hawq for float weights: mpq's own reason
        column.caption(f"{fmt}: {exc}")
        continue
    download(column, fmt, name, mime, contents[fmt])
with st.expander("The point as JSON"):
    st.code(contents["json"], language="json")
