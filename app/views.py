"""Pure tables the dashboard shows, built from runs read through mpq's public API (no Streamlit).

Every function here takes ``mpq.Run`` objects or the ``mpq.list_runs`` table and returns a
pandas DataFrame (columns listed in each docstring), a label or a point id, so the pages stay
thin and the tables are tested without a browser.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from datetime import date
from typing import Any

import pandas as pd

import mpq

#: The columns the table of runs, and of a model's layers (``run.tables["layers"]``), show at first:
#: narrow enough for a laptop's page (1024 px, sidebar open); the table's toolbar (Show/hide
#: columns) brings back the others.
RUN_COLUMNS = ("run", "status", "task", "target", "objectives")
MODEL_LAYER_COLUMNS = ("layer", "kind", "weight_params", "macs", "weight_shape")

#: Frontier columns that describe a point rather than cost it.
#: The run table of end-to-end ONNX Runtime latencies (``mpq measure --runtime onnxruntime --all-points``).
ORT_TABLE = "onnxruntime_latency"
POINT_COLUMNS = ("point", "label", "is_baseline", "optimal", "predicted_loss", "measured_metric", "dominated")


def cost_columns(frontier: pd.DataFrame) -> list[str]:
    """The cost columns of a frontier table (``latency_s``, ``energy_j``, target columns...)."""
    return [c for c in frontier.columns if c not in POINT_COLUMNS and pd.api.types.is_numeric_dtype(frontier[c])]


def axis_choices(run: mpq.Run) -> list[str]:
    """Columns a frontier chart can put on an axis: the run's objectives first, then the
    predicted loss, then every other cost column."""
    costs = cost_columns(run.frontier)
    return list(dict.fromkeys([*run.objectives, "predicted_loss", *costs]))


@functools.cache
def _bits(candidate: str) -> tuple[str, str, float, float]:
    found = mpq.get_candidate(candidate)
    return (
        found.weight_format.name,
        found.act_format.name,
        float(found.weight_format.bits_per_value),
        float(found.act_format.bits_per_value),
    )


def format_bits(candidates: Iterable[str]) -> pd.DataFrame:
    """What each candidate stores per value.

    Args:
        candidates: Candidate names such as ``w4a8``.

    Returns:
        One row per distinct candidate, in first-seen order: ``candidate``, ``weight_format``,
        ``act_format`` (format names), ``weight_bits``, ``act_bits`` (bits per value, shared block
        scales included, so MXFP4 is 4.25).

    Raises:
        UnknownNameError: a name is not a valid candidate.
    """
    names = list(dict.fromkeys(candidates))
    rows = [(name, *_bits(name)) for name in names]
    return pd.DataFrame(rows, columns=["candidate", "weight_format", "act_format", "weight_bits", "act_bits"])


def formats_summary(assignment: dict[str, str]) -> str:
    """``"w8a8:4 w4a8:2"``: how many layers run each candidate, most used first."""
    counts = pd.Series(list(assignment.values()), dtype="object").value_counts(sort=True)
    return " ".join(f"{name}:{count}" for name, count in counts.items())


def frontier_points(run: mpq.Run) -> pd.DataFrame:
    """The run's frontier with a per-point ``formats`` summary column (see :func:`formats_summary`).

    Returns:
        ``run.frontier``'s columns (``point``, ``label``, ``is_baseline``, ``optimal``,
        ``predicted_loss``, every cost column in its unit, ``measured_metric``) plus ``formats``,
        and ``ort_latency_s`` where ``mpq measure --runtime onnxruntime --all-points`` stored it.
    """
    points = run.frontier.copy()
    points["formats"] = [formats_summary(run.assignment(int(p))) for p in points["point"]]
    deployed = run.tables.get(ORT_TABLE)
    if deployed is not None and not deployed.empty:
        points["ort_latency_s"] = points["point"].map(deployed.set_index("point")["ort_latency_s"])
    return points


def check_point(run: mpq.Run, point: int) -> int:
    """``point`` as an int when the run has it.

    Raises:
        InvalidParameterError: the run has no such point (the message lists the ones it has).
    """
    known = sorted(int(p) for p in run.frontier["point"]) if not run.frontier.empty else []
    if point not in known:
        choices = ", ".join(map(str, known)) or "none: the run has no frontier yet"
        raise mpq.exceptions.InvalidParameterError(
            f"point: run {run.id} has no point {point!r}; choose one of {choices}."
        )
    return int(point)


def _sensitivity_by_layer(run: mpq.Run) -> pd.DataFrame:
    table = run.tables.get("sensitivity")
    if table is None or table.empty:
        return pd.DataFrame(index=pd.Index([], name="layer"))
    if "candidate" in table.columns:  # per-candidate (measured) probes are not a layer's trace
        table = table[table["candidate"].isna()]
    wide = table.pivot_table(index="layer", columns="probe", values="value", aggfunc="first")
    wide.columns = [f"sensitivity_{probe}" for probe in wide.columns]
    return wide


def layer_view(run: mpq.Run, point: int) -> pd.DataFrame:
    """Per-layer formats of one point beside the layer's size, sensitivity and cost.

    Args:
        run: A finished run.
        point: A value of ``run.frontier["point"]``.

    Returns:
        One row per layer in model order: ``layer``, ``kind``, ``weight_params``, ``macs`` (per
        sample), ``candidate``, ``weight_format``, ``act_format``, ``weight_bits``, ``act_bits``
        (bits per value), ``sensitivity_<probe>`` (the probe's trace per layer, e.g.
        ``sensitivity_hessian_w``), ``omega`` (predicted loss increase of this layer at this
        candidate) and the layer's cost at this candidate in every numeric cost column
        (``latency_s`` in s, ``energy_j`` in J, ``weight_bytes`` in bytes, ``bops``, target
        columns).

    Raises:
        InvalidParameterError: the run has no such point.
    """
    point = check_point(run, point)
    chosen = pd.DataFrame(list(run.assignment(point).items()), columns=["layer", "candidate"])
    view = chosen.merge(format_bits(chosen["candidate"]), on="candidate", how="left")
    layers = run.tables.get("layers")
    if layers is not None:
        info = layers[["layer", *[c for c in ("kind", "weight_params", "macs") if c in layers.columns]]]
        view = info.merge(view, on="layer", how="right")
    view = view.merge(_sensitivity_by_layer(run), left_on="layer", right_index=True, how="left")
    if "omega" in run.tables:
        view = view.merge(run.tables["omega"][["layer", "candidate", "omega"]], on=["layer", "candidate"], how="left")
    costs = run.tables.get("costs")
    if costs is not None:
        numeric = [
            c
            for c in costs.columns
            if c not in ("layer", "candidate")
            and pd.api.types.is_numeric_dtype(costs[c])
            and not pd.api.types.is_bool_dtype(costs[c])
        ]
        view = view.merge(costs[["layer", "candidate", *numeric]], on=["layer", "candidate"], how="left")
    return view.reset_index(drop=True)


def layer_columns(objectives: Sequence[str]) -> list[str]:
    """The columns :func:`layer_view`'s table shows at first (as :data:`RUN_COLUMNS`): the
    layer, the point's candidate, its omega and its cost in each of the run's ``objectives``."""
    return ["layer", "candidate", "omega", *objectives]


def point_diff(run_a: mpq.Run, point_a: int, run_b: mpq.Run, point_b: int) -> pd.DataFrame:
    """Per-layer difference of two points (of one run or of two runs of the same model).

    Args:
        run_a, run_b: The runs the points belong to.
        point_a, point_b: Their ``point`` values.

    Returns:
        One row per layer of ``point_a``, in model order: ``layer``, ``candidate_a``,
        ``candidate_b``, ``weight_bits_a``, ``weight_bits_b``, ``act_bits_a``, ``act_bits_b`` (bits
        per value), ``delta_weight_bits`` and ``delta_act_bits`` (b minus a), ``changed`` (bool).

    Raises:
        InvalidParameterError: a run has no such point, or the two points do not cover the same
            layers (different models).
    """
    a = run_a.assignment(check_point(run_a, point_a))
    b = run_b.assignment(check_point(run_b, point_b))
    if set(a) != set(b):
        only = sorted(set(a) ^ set(b))
        raise mpq.exceptions.InvalidParameterError(
            f"point_diff: runs {run_a.id} and {run_b.id} quantize different layers ({', '.join(only[:4])}...); "
            "compare points of the same model."
        )
    rows = []
    for layer, cand_a in a.items():
        cand_b = b[layer]
        (_, _, wa, aa), (_, _, wb, ab) = _bits(cand_a), _bits(cand_b)
        rows.append((layer, cand_a, cand_b, wa, wb, aa, ab, wb - wa, ab - aa, cand_a != cand_b))
    return pd.DataFrame(
        rows,
        columns=[
            "layer",
            "candidate_a",
            "candidate_b",
            "weight_bits_a",
            "weight_bits_b",
            "act_bits_a",
            "act_bits_b",
            "delta_weight_bits",
            "delta_act_bits",
            "changed",
        ],
    )


def calibration_points(run: mpq.Run) -> pd.DataFrame:
    """Predicted loss against the measured metric drop of every validated point.

    Returns:
        One row per point with a measured metric: ``point``, ``label``, ``is_baseline``,
        ``predicted_loss`` (summed omega), ``measured_metric`` and ``measured_drop`` (how much
        worse than the float32 model's the point's metric is, in the metric's unit: a fall of an
        accuracy, a rise of a perplexity), ``formats``.
    """
    points = frontier_points(run)
    points = points[points["measured_metric"].notna()]
    float_metric = run.record.get("float_metric")
    drop = float("nan") if float_metric is None else float_metric
    sign = 1 if run.higher_is_better else -1
    return points.assign(measured_drop=sign * (drop - points["measured_metric"]))[
        ["point", "label", "is_baseline", "predicted_loss", "measured_metric", "measured_drop", "formats"]
    ].reset_index(drop=True)


def run_label(run_id: int, runs: pd.DataFrame) -> str:
    """``"#3 digits-cnn on cpu-x86 · energy_j (done)"``: a run as the pickers show it."""
    row = runs.loc[runs["run"] == run_id]
    if row.empty:
        return f"#{run_id}"
    row = row.iloc[0]
    return f"#{run_id} {row['task']} on {row['target']} · {row['objectives']} ({row['status']})"


def filter_runs(
    runs: pd.DataFrame,
    *,
    tasks: Sequence[str] = (),
    targets: Sequence[str] = (),
    statuses: Sequence[str] = (),
    dates: tuple[date, date] | None = None,
) -> pd.DataFrame:
    """The runs that match every filter given (an empty filter matches all).

    Args:
        runs: The ``mpq.list_runs`` table.
        tasks: Model (task) names to keep.
        targets: Device names to keep.
        statuses: ``running``, ``done``, ``stopped`` or ``failed``.
        dates: First and last creation day (UTC), both included.

    Returns:
        The matching rows of ``runs``, newest first.
    """
    keep = pd.Series(True, index=runs.index)
    for column, wanted in (("task", tasks), ("target", targets), ("status", statuses)):
        if wanted:
            keep &= runs[column].isin(list(wanted))
    if dates is not None:
        day = pd.to_datetime(runs["created_at"]).dt.date
        keep &= (day >= dates[0]) & (day <= dates[1])
    return runs[keep].sort_values("run", ascending=False)


def displayable(table: pd.DataFrame) -> pd.DataFrame:
    """A copy whose tuple or list cells (``weight_shape``) are strings, as a table widget shows them."""
    out = table.copy()
    for column in out.columns:
        if out[column].dtype == object and out[column].map(lambda v: isinstance(v, (tuple, list))).any():
            out[column] = out[column].map(lambda v: " x ".join(map(str, v)) if isinstance(v, (tuple, list)) else v)
    return out


def point_from_selection(selection: Mapping[str, Any] | None) -> int | None:
    """The point id of a chart selection event (the first selected point's ``customdata``), or
    None when nothing with a point id is selected."""
    for picked in (selection or {}).get("points") or []:
        data = picked.get("customdata")
        if data is not None and len(data):
            return int(data[0])
    return None


def shared_axes(runs: Sequence[mpq.Run]) -> list[str]:
    """Columns every given run's frontier has, for a chart of several runs: the measured metric,
    the predicted loss, then the cost columns they share (in the first run's order)."""
    if not runs:
        return []
    shared = [c for c in cost_columns(runs[0].frontier) if all(c in r.frontier.columns for r in runs[1:])]
    return ["measured_metric", "predicted_loss", *shared]


def metric_names(runs: Iterable[mpq.Run]) -> str:
    """The runs' metric names, each once, for an axis they share: ``"accuracy"``, or
    ``"accuracy / cosine"`` for runs of tasks measured differently."""
    return " / ".join(dict.fromkeys(run.record["metric_name"] for run in runs))


def run_formats(run: mpq.Run) -> pd.DataFrame:
    """:func:`format_bits` of every candidate any point of the run uses (for one colour per
    format across the run's charts)."""
    return format_bits(run.assignments["candidate"])


def best_point(run: mpq.Run) -> int:
    """The point a page starts on: ``run.best()`` (highest measured metric, else lowest predicted
    loss), or the first point when the run has only baselines."""
    try:
        return int(run.best()["point"])
    except mpq.MpqError:
        return int(run.frontier["point"].iloc[0])


#: Characters that make Markdown of plain text (links and images need their brackets; Streamlit's
#: coloured text too): a stored task name or error is shown as written, never as a link, an image,
#: code or emphasis.
_MARKDOWN = set("\\`*_[]<>!|~$")
#: Bidirectional controls (U+202A-U+202E, U+2066-U+2069) reorder the text shown around them.
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def plain(text: object) -> str:
    """``text`` (a task name, a stored error) to show in Streamlit's Markdown as it was written:
    Markdown's characters escaped, bidirectional and other control characters dropped."""
    kept = (c for c in str(text) if c not in _BIDI and (c.isprintable() or c == " "))
    return "".join(f"\\{c}" if c in _MARKDOWN else c for c in kept)


def hide_password(db: str) -> str:
    """A store URL as the page may show it: a password in it replaced by ``***``."""
    scheme, sep, rest = db.partition("://")
    credentials, at, host = rest.rpartition("@")
    user, colon, _ = credentials.partition(":")
    return f"{scheme}{sep}{user}:***@{host}" if sep and at and colon else db
