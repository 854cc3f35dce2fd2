"""Pure plotly figure builders for the dashboard: DataFrames in, ``go.Figure`` out, no Streamlit.

Every point-level trace carries the point ids in ``customdata`` (first column), so a chart
selection maps back to a point; baselines (uniform configurations) are drawn as diamonds, named
in their hover (labels drawn beside clustered diamonds run into one another). Titles sit below
the chart's toolbar (:func:`chart_layout`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative
from plotly.subplots import make_subplots

#: Units of the columns charts put on axes (the frontier's and the cost tables' columns).
UNITS = {
    "latency_s": "s",
    "energy_j": "J",
    "weight_bytes": "bytes",
    "flash_bytes": "bytes",
    "sram_bytes": "bytes",
    "dram_bytes": "bytes",
    "bops": "bit-ops",
    "cycles": "cycles",
    "luts": "LUTs",
    "dsps": "DSPs",
    "brams": "BRAMs",
    "predicted_loss": "summed omega",
}

#: Colours from low precision (red) to high precision (blue/purple): format colours follow bits.
LOW_TO_HIGH_BITS = ("#d62728", "#ff7f0e", "#bcbd22", "#2ca02c", "#17becf", "#1f77b4", "#9467bd")

BASELINE_SYMBOL = "diamond"
POINT_SYMBOL = "circle"
BEATEN_COLOR = "#c7c7c7"  # light grey: a point another validated point beats on measurement


#: Plotly's toolbar (the modebar) spans the chart's top 28 px from the right edge, and a narrow
#: chart's toolbar reaches its left-aligned title: titles start below this band.
TOOLBAR_PX = 36
TITLE_PX = 26  # one line of title at Streamlit's font size, with its gap to the plot


def chart_layout(title: str, *, height: int, top_px: int = 0, **layout) -> dict:
    """``fig.update_layout`` arguments shared by every chart: ``title`` left-aligned under the
    toolbar band (:data:`TOOLBAR_PX`), then ``top_px`` more (subplot titles) above the plot.

    Args:
        title: The chart's title.
        height: The chart's height in px.
        top_px: Room between the title and the plot area, in px.
        **layout: Any other layout settings (``legend``, axes...).
    """
    return dict(
        title=dict(text=title, x=0, xanchor="left", y=1, yref="container", yanchor="top", pad=dict(t=TOOLBAR_PX)),
        height=height,
        margin=dict(t=TOOLBAR_PX + TITLE_PX + top_px, b=40),
        **layout,
    )


def axis_title(column: str, metric_name: str | None = None) -> str:
    """``"latency_s (s)"``: a column name with its unit; the measured metric under the task's
    name for it (``metric_name``: ``"accuracy"``) when given."""
    if column == "measured_metric" and metric_name:
        return metric_name
    unit = UNITS.get(column)
    return f"{column} ({unit})" if unit else column


def _log_scale(values: pd.Series) -> bool:
    """Log axes for positive values spanning more than two decades."""
    finite = values[np.isfinite(values)]
    return bool(len(finite)) and (finite > 0).all() and finite.max() / finite.min() > 100


LOG_AXIS = dict(type="log", dtick=1, exponentformat="power")  # a labelled tick per decade


def _scale(values: pd.Series) -> dict:
    """Axis settings: log when :func:`_log_scale`, else linear."""
    return LOG_AXIS if _log_scale(values) else dict(type="linear")


#: A group of measured values sits off-axis when the gap above it is at least this share of the
#: whole span and twice the span of the values above it: points quantization broke (at chance
#: level), which would squeeze every usable point onto the float32 line.
OFF_AXIS_GAP_SHARE = 0.5
BELOW_AXIS_SYMBOL = "triangle-down"


def metric_range(measured: Sequence[float], float_metric: float | None = None) -> tuple[float, float, float | None]:
    """The measured metric's axis: the range of the measured values and the float32 metric,
    padded, less a group of values far below the rest (:data:`OFF_AXIS_GAP_SHARE`).

    Args:
        measured: The points' measured metric (NaN: not measured, left out).
        float_metric: The float32 model's metric, always inside the range.

    Returns:
        ``(bottom, top, cut)``: the axis range, and the value below which points are off-axis
        (None: every point is on it).
    """
    values = np.sort([v for v in (*measured, float_metric) if v is not None and np.isfinite(v)])
    if not len(values):
        return 0.0, 1.0, None
    cut = None
    if len(values) > 2:
        gaps = np.diff(values)
        above = int(np.argmax(gaps)) + 1  # the first value above the widest gap
        kept_span = values[-1] - values[above]
        whole = gaps[above - 1] >= OFF_AXIS_GAP_SHARE * (values[-1] - values[0])
        if whole and gaps[above - 1] >= 2 * kept_span and (float_metric is None or float_metric >= values[above]):
            cut = float(values[above])
            values = values[above:]
    pad = 0.08 * max(values[-1] - values[0], 1e-3 * max(abs(values[-1]), 1.0))
    return float(values[0] - pad), float(values[-1] + pad), cut


def format_colors(formats: pd.DataFrame) -> dict[str, str]:
    """Candidate -> colour, ordered by bits so that colour reads as precision.

    Args:
        formats: ``candidate``, ``weight_bits``, ``act_bits`` (one row per candidate; the
            ``format_bits`` table of views.py).

    Returns:
        A colour (``#rrggbb``) per candidate: the fewest bits red, the most blue/purple; evenly
        spread over the palette, which repeats past seven candidates.
    """
    ordered = list(dict.fromkeys(formats.sort_values(["weight_bits", "act_bits", "candidate"])["candidate"]))
    n, k = len(ordered), len(LOW_TO_HIGH_BITS)
    slots = np.round(np.linspace(0, k - 1, n)).astype(int) if n <= k else np.arange(n) % k
    return {name: LOW_TO_HIGH_BITS[slot] for name, slot in zip(ordered, slots)}


def _number(value: float, column: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    unit = UNITS.get(column, "")
    return f"{value:.4g} {unit}".rstrip() if unit != "summed omega" else f"{value:.4g}"


def point_hover(points: pd.DataFrame, columns: Sequence[str], metric_name: str | None = None) -> list[str]:
    """One hover summary per point: id and label, the given columns with units, the measured
    metric under ``metric_name`` (when given) and the per-format layer counts (``formats``)."""
    texts = []
    for row in points.to_dict("records"):
        lines = [f"<b>point {row['point']}</b> ({row['label']})"]
        lines += [f"{c}: {_number(row[c], c)}" for c in columns]
        if metric_name is not None:
            lines.append(f"{metric_name}: {_number(row.get('measured_metric', float('nan')), '')}")
        if row.get("formats"):
            lines.append(f"formats: {row['formats']}")
        texts.append("<br>".join(lines))
    return texts


def frontier_figure(
    points: pd.DataFrame,
    *,
    x: str,
    y: str,
    metric_name: str,
    float_metric: float | None = None,
    selected: int | None = None,
    hover: Sequence[str] = (),
    title: str = "Frontier",
) -> go.Figure:
    """The frontier on two objectives (top) and the measured metric on the same x (bottom).

    Args:
        points: The frontier with ``point``, ``label``, ``is_baseline``, ``measured_metric``,
            ``formats`` and the ``x``/``y`` columns (views.frontier_points).
        x, y: Columns on the axes (``predicted_loss`` or any cost column).
        metric_name: The task's metric, for the bottom panel and the hover.
        float_metric: The float32 model's metric, drawn as a dashed line in the bottom panel.
        selected: A point id to ring in both panels.
        hover: Extra columns in each point's hover summary (x and y are always there).
        title: The figure's title.

    Returns:
        Traces ``frontier``, ``uniform baselines`` and ``beaten on measurement`` (points another
        validated point beats: greyed, whatever their kind) in each panel (rows 1 and 2), and
        ``selected`` when a point is selected; point ids in ``customdata``.
    """
    missing = [c for c in ("point", "label", "is_baseline", "measured_metric", x, y) if c not in points.columns]
    if missing:
        raise ValueError(f"points: missing columns {missing}; pass views.frontier_points(run).")
    fig = make_subplots(
        rows=2,
        cols=1,
        shared_xaxes=True,
        row_heights=[0.64, 0.36],
        vertical_spacing=0.08,
        subplot_titles=(f"{y} against {x}", f"measured {metric_name}"),
    )
    shown = list(dict.fromkeys([x, y, *hover]))
    bottom, top, cut = metric_range(points["measured_metric"], float_metric)

    def below(values: pd.Series) -> pd.Series:
        return values < cut if cut is not None else pd.Series(False, values.index)

    beaten = points["dominated"].fillna(False).astype(bool) if "dominated" in points else pd.Series(False, points.index)
    groups = (
        ("frontier", points[~points["is_baseline"] & ~beaten], POINT_SYMBOL, "#1f77b4"),
        ("uniform baselines", points[points["is_baseline"] & ~beaten], BASELINE_SYMBOL, "#444444"),
        ("beaten on measurement", points[beaten], POINT_SYMBOL, BEATEN_COLOR),
    )
    for name, rows, symbol, color in groups:
        if rows.empty:
            continue
        rows = rows.sort_values(x)
        common = dict(
            x=rows[x],
            customdata=rows[["point"]].to_numpy(),
            hovertext=point_hover(rows, shown, metric_name),
            hovertemplate="%{hovertext}<extra></extra>",
            legendgroup=name,
            marker=dict(symbol=symbol, size=11 if symbol == BASELINE_SYMBOL else 9, color=color),
        )
        fig.add_trace(go.Scatter(y=rows[y], name=name, mode="markers", **common), row=1, col=1)
        # Points off the metric axis sit on its bottom edge as arrows down (their hover: the value).
        off = below(rows["measured_metric"])
        marker = common.pop("marker") | dict(symbol=np.where(off, BELOW_AXIS_SYMBOL, symbol).tolist())
        metric = rows["measured_metric"].mask(off, bottom)
        fig.add_trace(
            go.Scatter(
                y=metric, name=name, mode="markers", showlegend=False, cliponaxis=False, marker=marker, **common
            ),
            row=2,
            col=1,
        )
    if selected is not None and (points["point"] == selected).any():
        row = points[points["point"] == selected]
        ring = dict(symbol="circle-open", size=20, color="#d62728", line=dict(width=3))
        for panel, values in ((1, row[y]), (2, row["measured_metric"].mask(below(row["measured_metric"]), bottom))):
            fig.add_trace(
                go.Scatter(
                    x=row[x],
                    y=values,
                    name="selected",
                    mode="markers",
                    marker=ring,
                    customdata=row[["point"]].to_numpy(),
                    hoverinfo="skip",
                    showlegend=panel == 1,
                ),
                row=panel,
                col=1,
            )
    if float_metric is not None and not math.isnan(float_metric):
        fig.add_hline(
            y=float_metric,
            line_dash="dash",
            line_color="#888888",
            row=2,
            col=1,
            annotation_text=f"float32 {float_metric:.4g}",
            annotation_position="bottom right",
        )
    off_axis = points["measured_metric"][below(points["measured_metric"])]
    if len(off_axis):
        fig.add_annotation(
            text=f"{len(off_axis)} {'point' if len(off_axis) == 1 else 'points'} below the axis ▼ "
            f"({metric_name} {off_axis.min():.3g}-{off_axis.max():.3g})",
            x=1,
            xref="x2 domain",
            xanchor="right",
            y=0,
            yref="y2 domain",
            yanchor="bottom",
            yshift=4,
            showarrow=False,
            font=dict(size=11, color="#555555"),
        )
    fig.update_xaxes(title_text=axis_title(x), row=2, col=1)
    fig.update_xaxes(**_scale(points[x]))
    fig.update_yaxes(title_text=axis_title(y), row=1, col=1, **_scale(points[y]))
    fig.update_yaxes(title_text=metric_name, range=[bottom, top], row=2, col=1)
    # 520 px: the cost axis' tick labels show without scrolling in a 1400x1000 window (857 px of
    # page under the browser's bars) below the page's title, facts and axis pickers.
    fig.update_layout(
        **chart_layout(title, height=520, top_px=24, clickmode="event+select", legend=dict(orientation="h", y=-0.12))
    )
    return fig


def layer_bits_figure(
    view: pd.DataFrame, *, colors: Mapping[str, str] | None = None, title: str = "Bits per layer"
) -> go.Figure:
    """Weight bits per layer as bars coloured by format, activation bits as marks.

    Args:
        view: One row per layer in model order: ``layer``, ``candidate``, ``weight_bits``,
            ``act_bits`` (views.layer_view).
        colors: Candidate -> colour; default :func:`format_colors` of the candidates shown.
        title: The figure's title.

    Returns:
        One bar trace per candidate (named after it) and an ``activation bits`` trace; the x axis
        keeps the model's layer order.
    """
    colors = dict(colors or format_colors(view[["candidate", "weight_bits", "act_bits"]].drop_duplicates()))
    fig = go.Figure()
    for candidate, rows in view.groupby("candidate", sort=False):
        fig.add_trace(
            go.Bar(
                x=rows["layer"],
                y=rows["weight_bits"],
                name=candidate,
                marker_color=colors[candidate],
                text=rows["candidate"],
                textposition="inside",
                insidetextanchor="middle",
                hovertemplate="%{x}: %{text}, %{y:g} weight bits<extra></extra>",
            )
        )
    fig.add_trace(
        go.Scatter(
            x=view["layer"],
            y=view["act_bits"],
            name="activation bits",
            mode="markers",
            marker=dict(symbol="line-ew-open", size=30, color="#222222", line=dict(width=3)),
            hovertemplate="%{x}: %{y:g} activation bits<extra></extra>",
        )
    )
    fig.update_layout(**_per_layer_bars(title, list(view["layer"]), barmode="overlay", y_title="bits per value"))
    return fig


def compare_figure(
    frontiers: Mapping[str, pd.DataFrame],
    *,
    x: str,
    y: str,
    log_x: bool | None = None,
    metric_name: str | None = None,
    title: str = "Runs compared",
) -> go.Figure:
    """Several runs' frontiers on one chart.

    Args:
        frontiers: Run label -> its frontier (``point``, ``label``, ``is_baseline``, ``x``, ``y``
            and ``formats``); each run keeps one colour.
        x, y: Columns on the axes (shared by every run).
        metric_name: The runs' metric (``"accuracy"``), the title of a ``measured_metric`` axis.
        log_x: A log x axis (costs of different devices span decades); None: log when the
            values span more than two decades.
        title: The figure's title.

    Returns:
        Per run: a ``<label>`` trace of its frontier points (sorted by x, joined) and a
        ``<label> baselines`` trace of its uniform baselines; point ids in ``customdata``.
    """
    fig = go.Figure()
    palette = qualitative.D3
    every = pd.concat([f[[x, y]] for f in frontiers.values()]) if frontiers else pd.DataFrame({x: [], y: []})
    for i, (label, points) in enumerate(frontiers.items()):
        color = palette[i % len(palette)]
        for name, rows, symbol in (
            (label, points[~points["is_baseline"]], POINT_SYMBOL),
            (f"{label} baselines", points[points["is_baseline"]], BASELINE_SYMBOL),
        ):
            if rows.empty:
                continue
            rows = rows.sort_values(x)
            fig.add_trace(
                go.Scatter(
                    x=rows[x],
                    y=rows[y],
                    name=name,
                    legendgroup=label,
                    customdata=rows[["point"]].to_numpy(),
                    mode="lines+markers" if symbol == POINT_SYMBOL else "markers",
                    marker=dict(symbol=symbol, size=10 if symbol == BASELINE_SYMBOL else 8, color=color),
                    line=dict(color=color, width=1.5),
                    hovertext=[f"{label}<br>{h}" for h in point_hover(rows, [x, y])],
                    hovertemplate="%{hovertext}<extra></extra>",
                )
            )
    fig.update_layout(
        **chart_layout(
            title,
            height=560,
            legend=dict(orientation="h", y=-0.15),
            xaxis=dict(
                title=axis_title(x, metric_name),
                **(_scale(every[x]) if log_x is None else LOG_AXIS if log_x else dict(type="linear")),
            ),
            yaxis=dict(title=axis_title(y, metric_name), **_scale(every[y])),
        )
    )
    return fig


def layer_diff_figure(
    diff: pd.DataFrame, *, label_a: str, label_b: str, title: str = "Per-layer difference"
) -> go.Figure:
    """Two points' weight bits side by side per layer, each bar labelled with its candidate.

    Args:
        diff: views.point_diff's table (``layer``, ``candidate_a``, ``candidate_b``,
            ``weight_bits_a``, ``weight_bits_b``, ``changed``).
        label_a, label_b: Legend names of the two points.
        title: The figure's title.

    Returns:
        Two bar traces (``label_a``, ``label_b``); layers whose candidate changed have outlined
        bars.
    """
    fig = go.Figure()
    outline = np.where(diff["changed"], 2.5, 0.0)
    for label, side, color in ((label_a, "a", "#1f77b4"), (label_b, "b", "#ff7f0e")):
        fig.add_trace(
            go.Bar(
                x=diff["layer"],
                y=diff[f"weight_bits_{side}"],
                name=label,
                marker_color=color,
                marker_line=dict(width=outline, color="#222222"),
                text=diff[f"candidate_{side}"],
                textposition="inside",
                textangle=-90,
                insidetextanchor="middle",
                hovertemplate="%{x}: %{text}<extra>" + label + "</extra>",
            )
        )
    fig.update_layout(**_per_layer_bars(title, list(diff["layer"]), barmode="group", y_title="weight bits per value"))
    return fig


def _per_layer_bars(title: str, layers: list[str], *, barmode: str, y_title: str) -> dict:
    """The layout of a bar chart over layers in model order, legend below."""
    return chart_layout(
        title,
        height=420,
        barmode=barmode,
        legend=dict(orientation="h", y=-0.2),
        xaxis=dict(title="layer", categoryorder="array", categoryarray=layers),
        yaxis=dict(title=y_title, rangemode="tozero"),
    )


def calibration_figure(
    points: pd.DataFrame, *, metric_name: str, spearman: float | None, title: str = "Predicted against measured"
) -> go.Figure:
    """Predicted loss against the measured metric drop, with the run's Spearman correlation.

    Args:
        points: views.calibration_points's table (``point``, ``label``, ``is_baseline``,
            ``predicted_loss``, ``measured_drop``, ``formats``).
        metric_name: The task's metric.
        spearman: The stored rank correlation of predicted loss with the measured drop.
        title: The figure's title; the Spearman correlation is appended.

    Returns:
        Traces ``frontier`` and ``uniform baselines``; x is log-scaled when the predicted losses
        span more than two decades.
    """
    rho = "n/a" if spearman is None or math.isnan(spearman) else f"{spearman:.3f}"
    fig = go.Figure()
    for name, rows, symbol in (
        ("frontier", points[~points["is_baseline"]], POINT_SYMBOL),
        ("uniform baselines", points[points["is_baseline"]], BASELINE_SYMBOL),
    ):
        if rows.empty:
            continue
        fig.add_trace(
            go.Scatter(
                x=rows["predicted_loss"],
                y=rows["measured_drop"],
                name=name,
                mode="markers",
                customdata=rows[["point"]].to_numpy(),
                marker=dict(symbol=symbol, size=10),
                hovertext=point_hover(rows, ["predicted_loss", "measured_drop"], metric_name),
                hovertemplate="%{hovertext}<extra></extra>",
            )
        )
    fig.update_layout(
        **chart_layout(
            f"{title} (Spearman ρ = {rho})",
            height=480,
            legend=dict(orientation="h", y=-0.2),
            xaxis=dict(title=axis_title("predicted_loss"), **_scale(points["predicted_loss"])),
            yaxis=dict(title=f"measured {metric_name} drop (worse than float32 by)"),
        )
    )
    return fig
