"""charts.py: pure figure builders, checked on small hand-made tables (no Streamlit)."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from app_support import app_module

charts = app_module("charts")


def _frontier() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "point": [0, 1, 2, 3, 4],
            "label": ["frontier", "frontier", "frontier", "all-w4a8", "all-w8a8"],
            "is_baseline": [False, False, False, True, True],
            "predicted_loss": [1e-2, 1e-3, 1e-5, 2e-3, 1e-6],
            "latency_s": [3e-6, 2e-6, 1e-6, 2.5e-6, 4e-6],
            "weight_bytes": [100.0, 200.0, 400.0, 300.0, 600.0],
            "measured_metric": [0.5, 0.9, 0.97, 0.8, math.nan],
            "formats": ["w4a8:2", "w4a8:1 w8a8:1", "w8a8:2", "w4a8:2", "w8a8:2"],
        }
    )


def _by_name(figure, name: str, axis: str = "y") -> list:
    return [t for t in figure.data if t.name == name and (t.yaxis or "y") == axis]


def test_frontier_figure_panels_baselines_and_selection():
    fig = charts.frontier_figure(
        _frontier(),
        x="latency_s",
        y="predicted_loss",
        metric_name="accuracy",
        float_metric=0.98,
        selected=1,
        hover=["weight_bytes"],
    )
    (top,) = _by_name(fig, "frontier", "y")
    (bottom,) = _by_name(fig, "frontier", "y2")
    assert list(top.x) == [1e-6, 2e-6, 3e-6]  # sorted by x
    assert list(top.y) == [1e-5, 1e-3, 1e-2] and list(bottom.y) == [0.97, 0.9, 0.5]
    assert [int(c[0]) for c in top.customdata] == [2, 1, 0]
    assert top.hovertext[1].split("<br>") == [
        "<b>point 1</b> (frontier)",
        "latency_s: 2e-06 s",
        "predicted_loss: 0.001",
        "weight_bytes: 200 bytes",
        "accuracy: 0.9",
        "formats: w4a8:1 w8a8:1",
    ]
    (marks,) = _by_name(fig, "uniform baselines", "y")
    assert marks.marker.symbol == "diamond" and marks.mode == "markers"  # named in the hover, not beside
    assert [h.split("<br>")[0] for h in marks.hovertext] == ["<b>point 3</b> (all-w4a8)", "<b>point 4</b> (all-w8a8)"]
    ring_top, ring_bottom = fig.select_traces(selector={"name": "selected"})
    assert (ring_top.x[0], ring_top.y[0], ring_bottom.y[0]) == (2e-6, 1e-3, 0.9)
    assert [s.y0 for s in fig.layout.shapes] == [0.98]
    # Predicted losses span four decades: log y; latencies span a factor of four: linear x.
    assert fig.layout.yaxis.type == "log" and fig.layout.xaxis2.type == "linear"
    assert fig.layout.xaxis2.title.text == "latency_s (s)"


def test_frontier_figure_without_selection_or_metric_and_bad_input():
    fig = charts.frontier_figure(_frontier(), x="weight_bytes", y="latency_s", metric_name="accuracy")
    assert not list(fig.select_traces(selector={"name": "selected"}))
    assert not fig.layout.shapes
    with pytest.raises(ValueError, match=r"points: missing columns \['energy_j'\]"):
        charts.frontier_figure(_frontier(), x="energy_j", y="latency_s", metric_name="accuracy")


def test_frontier_metric_panel_zooms_to_the_usable_points_and_marks_the_broken_ones_below():
    # Two points at chance level (0.1 on ten digits) and three usable ones: an axis from 0 to 1
    # would put the usable ones on the float32 line.
    points = _frontier().assign(measured_metric=[0.1, 0.95, 0.97, 0.11, 0.96])
    fig = charts.frontier_figure(points, x="latency_s", y="predicted_loss", metric_name="accuracy", float_metric=0.98)
    bottom, top = fig.layout.yaxis2.range
    assert 0.9 < bottom < 0.95 and 0.98 < top < 1.0
    (front,) = _by_name(fig, "frontier", "y2")  # points 2, 1, 0 by latency
    assert list(front.y) == pytest.approx([0.97, 0.95, bottom]) and front.cliponaxis is False
    assert list(front.marker.symbol) == ["circle", "circle", "triangle-down"]
    (marks,) = _by_name(fig, "uniform baselines", "y2")  # points 3, 4
    assert list(marks.y) == pytest.approx([bottom, 0.96]) and list(marks.marker.symbol) == ["triangle-down", "diamond"]
    (note,) = [a for a in fig.layout.annotations if "below" in a.text]
    assert note.text == "2 points below the axis ▼ (accuracy 0.1-0.11)" and note.yref == "y2 domain"
    # The hover keeps the measured value of a point drawn on the edge.
    assert "accuracy: 0.1<br>" in front.hovertext[2]


@pytest.mark.parametrize(
    ("measured", "float_metric", "cut"),
    [
        ([0.1, 0.11, 0.95, 0.97], 0.98, 0.95),  # chance-level points off the axis
        ([0.5, 0.8, 0.9, 0.97], 0.98, None),  # spread out: every point on it
        ([0.1, 0.95, 0.97], 0.05, None),  # the float32 line stays in range, so nothing is cut
        ([0.9, 0.9], None, None),  # equal values: a small range around them
        ([math.nan], None, None),
    ],
)
def test_metric_range(measured, float_metric, cut):
    bottom, top, got = charts.metric_range(measured, float_metric)
    assert got == cut and bottom < top
    kept = [v for v in (*measured, float_metric) if v is not None and not math.isnan(v) and (cut is None or v >= cut)]
    assert all(bottom < v < top for v in kept)


def test_format_colors_follow_bits_not_input_order():
    formats = pd.DataFrame(
        {"candidate": ["w8a8", "w2a2", "w4a8", "w4a4"], "weight_bits": [8, 2, 4, 4], "act_bits": [8, 2, 8, 4]}
    )
    colors = charts.format_colors(formats)
    palette = charts.LOW_TO_HIGH_BITS
    assert colors == {"w2a2": palette[0], "w4a4": palette[2], "w4a8": palette[4], "w8a8": palette[6]}
    assert charts.format_colors(formats.iloc[::-1]) == colors
    two = charts.format_colors(formats.iloc[:2])
    assert two == {"w2a2": palette[0], "w8a8": palette[-1]}
    many = pd.DataFrame({"candidate": [f"w{b}a8" for b in range(2, 11)], "weight_bits": range(2, 11), "act_bits": 8})
    assert list(charts.format_colors(many).values()) == [*palette, palette[0], palette[1]]  # the palette repeats


def test_layer_bits_figure_one_bar_trace_per_format_in_model_order():
    view = pd.DataFrame(
        {
            "layer": ["conv1", "conv2", "fc"],
            "candidate": ["w8a8", "w4a8", "w8a8"],
            "weight_bits": [8.0, 4.0, 8.0],
            "act_bits": [8.0, 8.0, 8.0],
        }
    )
    fig = charts.layer_bits_figure(view, colors={"w8a8": "#111111", "w4a8": "#222222"})
    bars = [t for t in fig.data if t.type == "bar"]
    assert [(t.name, list(t.x), list(t.y), t.marker.color) for t in bars] == [
        ("w8a8", ["conv1", "fc"], [8.0, 8.0], "#111111"),
        ("w4a8", ["conv2"], [4.0], "#222222"),
    ]
    (acts,) = [t for t in fig.data if t.name == "activation bits"]
    assert list(acts.y) == [8.0, 8.0, 8.0]
    assert list(fig.layout.xaxis.categoryarray) == ["conv1", "conv2", "fc"]


def test_compare_figure_one_colour_per_run():
    other = _frontier().assign(latency_s=lambda f: f.latency_s * 1000)  # another device, 1000x slower
    fig = charts.compare_figure({"run 1": _frontier(), "run 2": other}, x="latency_s", y="measured_metric")
    assert [t.name for t in fig.data] == ["run 1", "run 1 baselines", "run 2", "run 2 baselines"]
    assert fig.data[0].marker.color == fig.data[1].marker.color != fig.data[2].marker.color
    assert list(fig.data[2].x) == pytest.approx([1e-3, 2e-3, 3e-3])
    assert fig.layout.xaxis.type == "log"  # six decades apart
    assert fig.layout.yaxis.title.text == "measured_metric"  # no metric name given
    named = charts.compare_figure({"run 1": _frontier()}, x="latency_s", y="measured_metric", metric_name="accuracy")
    assert (named.layout.yaxis.title.text, named.layout.xaxis.title.text) == ("accuracy", "latency_s (s)")
    assert (
        charts.compare_figure({"run 1": _frontier()}, x="latency_s", y="measured_metric", log_x=True).layout.xaxis.type
        == "log"
    )
    assert (
        charts.compare_figure(
            {"run 1": other, "run 2": _frontier()}, x="latency_s", y="measured_metric", log_x=False
        ).layout.xaxis.type
        == "linear"
    )


def test_layer_diff_figure_outlines_changed_layers():
    diff = pd.DataFrame(
        {
            "layer": ["a", "b"],
            "candidate_a": ["w8a8", "w4a8"],
            "candidate_b": ["w8a8", "w8a8"],
            "weight_bits_a": [8.0, 4.0],
            "weight_bits_b": [8.0, 8.0],
            "changed": [False, True],
        }
    )
    fig = charts.layer_diff_figure(diff, label_a="A", label_b="B")
    assert [t.name for t in fig.data] == ["A", "B"]
    assert list(fig.data[1].text) == ["w8a8", "w8a8"] and list(fig.data[0].y) == [8.0, 4.0]
    assert list(fig.data[0].marker.line.width) == [0.0, 2.5]


@pytest.mark.parametrize(("spearman", "shown"), [(0.91234, "0.912"), (None, "n/a"), (math.nan, "n/a")])
def test_calibration_figure_title_carries_spearman(spearman, shown):
    points = _frontier().dropna().assign(measured_drop=lambda f: 0.98 - f.measured_metric)
    fig = charts.calibration_figure(points, metric_name="accuracy", spearman=spearman, title="Run 1")
    assert fig.layout.title.text == f"Run 1 (Spearman ρ = {shown})"
    frontier, baselines = fig.data
    assert list(frontier.x) == [1e-2, 1e-3, 1e-5] and list(frontier.y) == pytest.approx([0.48, 0.08, 0.01])
    assert baselines.marker.symbol == "diamond" and fig.layout.xaxis.type == "log"


def test_axis_titles_carry_units():
    assert [charts.axis_title(c) for c in ("latency_s", "energy_j", "weight_bytes", "luts", "pe")] == [
        "latency_s (s)",
        "energy_j (J)",
        "weight_bytes (bytes)",
        "luts (LUTs)",
        "pe",
    ]
    assert charts.axis_title("measured_metric", "perplexity") == "perplexity"
    assert charts.axis_title("latency_s", "perplexity") == "latency_s (s)"


def test_frontier_figure_greys_points_beaten_on_measurement():
    points = _frontier().assign(dominated=pd.array([True, False, False, True, pd.NA], dtype="boolean"))
    fig = charts.frontier_figure(points, x="latency_s", y="predicted_loss", metric_name="accuracy")
    (beaten,) = _by_name(fig, "beaten on measurement", "y")
    assert sorted(int(c[0]) for c in beaten.customdata) == [0, 3] and beaten.marker.color == charts.BEATEN_COLOR
    (front,) = _by_name(fig, "frontier", "y")
    (marks,) = _by_name(fig, "uniform baselines", "y")
    assert [int(c[0]) for c in front.customdata] == [2, 1] and [int(c[0]) for c in marks.customdata] == [4]


def _every_figure() -> dict:
    frontier = _frontier()
    view = pd.DataFrame(
        {"layer": ["a", "b"], "candidate": ["w8a8", "w4a8"], "weight_bits": [8.0, 4.0], "act_bits": 8.0}
    )
    diff = pd.DataFrame(
        {
            "layer": ["a"],
            "candidate_a": ["w8a8"],
            "candidate_b": ["w4a8"],
            "weight_bits_a": [8.0],
            "weight_bits_b": [4.0],
            "changed": [True],
        }
    )
    calibration = frontier.assign(measured_drop=0.98 - frontier.measured_metric)
    return {
        "frontier": charts.frontier_figure(frontier, x="latency_s", y="predicted_loss", metric_name="accuracy"),
        "layer bits": charts.layer_bits_figure(view),
        "compare": charts.compare_figure({"run 1": frontier}, x="latency_s", y="measured_metric"),
        "layer diff": charts.layer_diff_figure(diff, label_a="a", label_b="b"),
        "calibration": charts.calibration_figure(calibration, metric_name="accuracy", spearman=0.9),
    }


@pytest.mark.parametrize("name", ["frontier", "layer bits", "compare", "layer diff", "calibration"])
def test_titles_start_below_the_toolbar_and_points_carry_no_labels(name):
    figure = _every_figure()[name]
    title = figure.layout.title
    # Plotly's toolbar takes the chart's top 28 px from the right; on a narrow chart it reaches a
    # left-aligned title, so the title's top edge is below it, and the plot below the title.
    assert (title.yref, title.y, title.yanchor, title.xanchor) == ("container", 1, "top", "left")
    assert title.pad.t >= 28 + 4
    assert figure.layout.margin.t >= title.pad.t + charts.TITLE_PX
    # Text beside markers runs together where points cluster (the baselines of a frontier's top
    # left): points are named in their hover.
    scatters = [t for t in figure.data if t.type == "scatter"]
    assert all("text" not in (t.mode or "") for t in scatters), [t.mode for t in scatters]
