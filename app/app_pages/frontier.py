"""Frontier: a run's frontier on any two objectives with its measured metric, and the selected
point's per-layer formats beside the layer table (sensitivity, omega, cost), with exports."""

import warnings

import charts
import exports
import pandas as pd
import streamlit as st
import ui
import views

import mpq

runs = ui.runs_or_stop()
run = ui.selected_run(runs)
record = run.record
metric = record["metric_name"]

st.title(f"Run {run.id}: {record['task_name']} on {run.target}")
facts = [
    f"objectives {', '.join(run.objectives)}",
    f"budgets {record.get('budgets') or 'none'}",
    f"created {record['created_at']:%Y-%m-%d %H:%M} UTC",
]
if record.get("float_metric") is not None:
    facts.append(f"float32 {metric} {record['float_metric']:.4f}")
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
contents = {}
for column, fmt in zip(st.columns(len(exports.EXPORT_FORMATS)), exports.EXPORT_FORMATS):
    key = f"export_{fmt}"
    if fmt in exports.MODEL_FILES:  # rebuilding the model takes seconds: only when asked, kept per point
        built = st.session_state.setdefault("model_files", {})
        if column.button(f"Build {fmt}", key=f"build_{fmt}", icon=":material/build:"):
            with st.spinner(f"Exporting point {point} to {fmt}..."), warnings.catch_warnings(record=True) as notes:
                warnings.simplefilter("always", UserWarning)  # mpq's notes on what the file stores
                try:
                    built[(run.db, run.id, point, fmt)] = (*exports.export_file(run, point, fmt), notes)
                except mpq.exceptions.InvalidParameterError as exc:  # e.g. float formats in QONNX
                    built[(run.db, run.id, point, fmt)] = str(exc)
        done = built.get((run.db, run.id, point, fmt))
        if isinstance(done, str):
            column.caption(f"{fmt}: {done}")
        elif done is not None:
            name, mime, data, notes = done
            column.download_button(
                f"Download {fmt}",
                data,
                file_name=name,
                mime=mime,
                key=key,
                on_click="ignore",
                icon=":material/download:",
            )
            for note in notes:  # e.g. weights ONNX has no type for, stored dequantized
                if note.category is UserWarning:
                    column.caption(f"{fmt}: {note.message}")
        continue
    try:
        name, mime, contents[fmt] = exports.export_file(run, point, fmt)
    except mpq.exceptions.InvalidParameterError as exc:  # e.g. hawq for float weights: mpq's own reason
        column.caption(f"{fmt}: {exc}")
        continue
    column.download_button(
        f"Download {fmt}",
        contents[fmt],
        file_name=name,
        mime=mime,
        key=key,
        on_click="ignore",
        icon=":material/download:",
    )
with st.expander("The point as JSON"):
    st.code(contents["json"], language="json")
