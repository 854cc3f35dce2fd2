"""How the CLI shows tables: rich tables for people, stable JSON shapes for programs.

JSON shapes (stable; documented in docs/cli.md):
- ``mpq frontier RUN --json`` and ``mpq search --json``: ``{"run": id, "task": str, "target": str,
  "objectives": [..], "metric_name": str, "float_metric": float|null, "spearman": float|null (null
  where the held-out set cannot resolve the measured spread or every point measures the same),
  "rank_note": str|null (the rho, or why none is given; null before validation),
  "evaluations": int, "max_drop": float|str|null, "threads": int|null (torch's intra-op threads the
  search ran on; null before mpq recorded them), "best_within_drop": point|null,
  "points": [{"point", "label", "is_baseline", "optimal", "predicted_loss", "measured_metric",
  "dominated": bool|null, "costs": {column: value}, "ort_latency_s": float|null (stored by ``mpq
  measure --runtime onnxruntime --all-points``), "assignment": {layer: candidate}}]}``.
- ``mpq show RUN --json``: the frontier's shape and ``"model_hash", "data_hash", "budgets": {cost:
  limit}, "created_at", "layers": [{"layer", ...the layer table's columns}]``.
- ``mpq runs --json``: a list of ``{"run", "status", "task", "target", "objectives", "points",
  "metric_name", "float_metric", "spearman", "created_at", "finished_at"}``.
- ``mpq devices --json``: a list of ``{"name", "kind", "description", "candidates"}``.
- ``mpq compare RUN RUN --json``: ``{"settings": [{"setting", "first", "second"}] (those that
  differ), "frontiers": [frontier rows with "run"], "points": [K, L], "layers": [{"layer",
  "candidate_first", "candidate_second", "changed"}] (every layer)}``.

Tables read whole at the terminal's width (80 columns included): :func:`print_table` leaves out
the columns that do not fit, least needed first, and names them (``--wide`` shows every column).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pandas as pd
from rich.cells import cell_len
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.segment import Segments
from rich.table import Column, Table

from mpq._frontier_columns import cost_columns, stored_latency

if TYPE_CHECKING:
    from mpq._runs import Run


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):  # numpy scalars
        return _plain(value.item())
    if isinstance(value, pd.Timestamp) or hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def run_json(run: Run) -> dict[str, Any]:
    costs = cost_columns(run.frontier)
    deployed = stored_latency(run)
    return {
        "run": run.id,
        "task": run.record["task_name"],
        "target": run.target,
        "objectives": run.objectives,
        "metric_name": run.record["metric_name"],
        "float_metric": _plain(run.record["float_metric"]),
        "spearman": _plain(run.record["spearman"]),
        "rank_note": run.rank_note,
        "evaluations": run.record["evaluations"],
        "quantizer": run.record.get("quantizer"),
        "max_drop": run.record["settings"].get("max_drop"),
        "threads": run.record["settings"].get("threads"),
        "best_within_drop": _best_within_drop(run),
        "points": [
            {
                "point": int(row["point"]),
                "label": row["label"],
                "is_baseline": bool(row["is_baseline"]),
                "optimal": bool(row["optimal"]),
                "predicted_loss": _plain(row["predicted_loss"]),
                "measured_metric": _plain(row["measured_metric"]),
                "dominated": None if pd.isna(row["dominated"]) else bool(row["dominated"]),
                "costs": {c: _plain(row[c]) for c in costs},
                "ort_latency_s": None if deployed is None else _plain(deployed.get(int(row["point"]))),
                "assignment": run.assignment(int(row["point"])),
            }
            for _, row in run.frontier.iterrows()
        ],
    }


def show_json(run: Run) -> dict[str, Any]:
    """``mpq show RUN --json``: what ``mpq show`` prints, as data."""
    record = run.record
    layers = run.tables.get("layers")
    return {
        **run_json(run),
        "model_hash": record["model_hash"],
        "data_hash": record["data_hash"],
        "budgets": record["budgets"] or {},
        "created_at": _plain(record["created_at"]),
        "layers": [] if layers is None else table_json(layers),
    }


def table_json(table: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {k: _plain(v) if not isinstance(v, (list, tuple)) else list(v) for k, v in row.items()}
        for row in table.to_dict("records")
    ]


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, default=_plain)


#: Bidirectional controls (U+202A-U+202E, U+2066-U+2069): printed raw, they reorder the text
#: around them on the user's terminal (a task name shown right to left).
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def plain(text: object) -> str:
    """Stored free text (a task name, an error) as a table or a line shows it: bidirectional and
    other control characters dropped, rich's markup escaped (``[link=...]`` stays text)."""
    return escape("".join(c for c in str(text) if c not in _BIDI and (c.isprintable() or c == " ")))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) < 1e9:
            return str(int(value))  # bytes, resources, cycles: exact, and no wider than "1.234e+08"
        return f"{value:.4g}"
    if isinstance(value, (list, tuple)):
        return plain(", ".join(map(str, value)))
    return plain(value)


@dataclass(frozen=True)
class Fill:
    """A column that takes the width the others leave: ``cells(full, width)`` shortens its cells to
    ``width`` where it can, and ``note`` says how, after the table."""

    column: str
    cells: Callable[[pd.Series, int], pd.Series]
    note: str


def _table(frame: pd.DataFrame, title: str | None, wrap: Sequence[str]) -> Table:
    """``frame`` as a rich table: numbers right-aligned, 4 significant digits; a cell stays on one
    line unless its column is in ``wrap`` (free text, broken at spaces)."""
    out = Table(title=title, title_justify="left")
    cells = {column: [_fmt(v) for v in frame[column]] for column in frame.columns}
    for column in frame.columns:
        numeric = pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column])
        whole = None if column in wrap else max(map(cell_len, [str(column), *cells[column]]))
        # min_width: rich measures a cell by its longest word; one that may not wrap needs all of it
        out.add_column(str(column), justify="right" if numeric else "left", no_wrap=whole is not None, min_width=whole)
    for row in zip(*cells.values()):
        out.add_row(*row)
    return out


def _needed(console: Console, table: Table) -> int:
    """The width that shows every cell of ``table`` whole (measured without the console's bound,
    which rich would clamp it to)."""
    return Measurement.get(console, console.options.update_width(10_000), table).minimum


def print_table(
    console: Console,
    frame: pd.DataFrame,
    *,
    title: str | None = None,
    optional: Sequence[str] = (),
    fill: Fill | None = None,
    wrap: Sequence[str] = (),
    wide: bool = False,
) -> None:
    """Print ``frame`` with every cell whole at the console's width (80 columns included): the
    ``optional`` columns are left out, in that order, until the table fits, then those that fit
    again (a wider one went after them) come back; a line after the table names the others. With
    ``wide`` (or when nothing is left to leave out) the table keeps every column and is as wide as
    it needs."""

    def without(columns: list[str]) -> pd.DataFrame:
        shown = frame.drop(columns=columns)
        if fill is not None and fill.column in shown and not wide:
            rest = _needed(console, _table(shown.drop(columns=fill.column), title, wrap))
            shown = shown.assign(**{fill.column: fill.cells(shown[fill.column], console.width - rest - 3)})
        return shown

    hidden: list[str] = []
    shown = without(hidden)
    while not wide and _needed(console, _table(shown, title, wrap)) > console.width:
        if len(hidden) == len(optional):  # nothing left to leave out: every column, as wide as it needs
            hidden, shown = [], frame
            break
        hidden.append(optional[len(hidden)])
        shown = without(hidden)
    else:
        for column in reversed(hidden):  # one left out before a wider one may fit again; the fill keeps its cells
            trial = shown.join(frame[[column]])[[c for c in frame.columns if c in shown or c == column]]
            if _needed(console, _table(trial, title, wrap)) <= console.width:
                shown, hidden = trial, [c for c in hidden if c != column]
    table = _table(shown, title, wrap)
    needed = _needed(console, table)
    if needed > console.width:  # rendered at its own width: the terminal may wrap it, nothing is cut
        console.print(Segments(console.render(table, console.options.update_width(needed))), crop=False, soft_wrap=True)
    else:
        console.print(table)
    hidden = [column for column in frame.columns if column in hidden]  # named in the table's order
    notes = [f"{', '.join(hidden)} left out at {console.width} columns; --wide shows all"] if hidden else []
    if fill is not None and fill.column in shown and not shown[fill.column].equals(frame[fill.column]):
        notes.append(fill.note)
    print_parts(console, notes)


def print_parts(console: Console, parts: Sequence[str], sep: str = "; ") -> None:
    """Print ``parts`` joined by ``sep``, a new line wherever the next part would not fit, so that
    no part (a number, a date, a command) is broken across lines."""
    line = ""
    for part in parts:
        if line and cell_len(f"{line}{sep}{part}{sep.rstrip()}") > console.width:
            console.print(line + sep.rstrip())
            line = part
        else:
            line = f"{line}{sep}{part}" if line else part
    if line:
        console.print(line)


def print_runs(console: Console, runs: pd.DataFrame, wide: bool = False) -> None:
    """``mpq runs``: the run's identity first; its float metric (``accuracy 0.9839``) and rank
    correlation are left out first at a narrow width."""
    view = runs.assign(
        created_at=runs["created_at"].dt.strftime("%Y-%m-%d %H:%M"),
        float_metric=[
            "-" if pd.isna(value) else f"{name} {value:.4f}"
            for name, value in zip(runs["metric_name"], runs["float_metric"])
        ],
    )
    view = view[["run", "status", "task", "target", "objectives", "points", "created_at", "float_metric", "spearman"]]
    print_table(console, view, optional=["spearman", "float_metric", "points", "created_at"], wide=wide)


def print_layers(console: Console, layers: pd.DataFrame, wide: bool = False) -> None:
    """A run's layer table: name, kind, weight shape (``32x16x3x3``) and MACs first."""
    view = layers.assign(weight_shape=["x".join(map(str, shape)) for shape in layers["weight_shape"]])
    order = ["layer", "kind", "weight_shape", "macs", "weight_params", "in_elems", "out_elems", "bias_params", "groups"]
    optional = ["groups", "bias_params", "out_elems", "in_elems", "weight_params", "macs"]
    print_table(console, view[order], title="layers", optional=optional, wide=wide)


def _best_within_drop(run: Run) -> int | None:
    max_drop = run.record["settings"].get("max_drop")
    if max_drop is None or run.record["float_metric"] is None:
        return None
    try:
        return int(run.best(max_drop=max_drop)["point"])
    except ValueError:  # nothing measured within it yet (an unfinished run)
        return None


def shown_points(run: Run, all_points: bool = False) -> pd.DataFrame:
    """The points a person is shown: the measured frontier (validated points no other validated
    point beats), or with ``all_points`` every validated point; every point of a run not validated."""
    frontier = run.frontier
    validated = frontier[frontier["measured_metric"].notna()]
    if validated.empty:
        return frontier
    rows = validated if all_points else validated[validated["dominated"].fillna(False).astype(bool) == False]  # noqa: E712
    return rows.sort_values([run.objectives[0], "measured_metric"], ascending=[True, not run.higher_is_better])


def budget_columns(run: Run) -> list[str]:
    """The cost columns the run's device has a capacity for (flash and SRAM bytes on an MCU, LUTs,
    DSPs and BRAMs on an FPGA), beside its objectives."""
    limits = run.tables.get("costs", pd.DataFrame()).attrs.get("limits", {})
    return [c for c in limits if c in run.frontier.columns and c not in run.objectives]


def formats_summary(assignment: dict[str, str]) -> str:
    """``"w8a8:3 w4a8:2 w4a4:1"``: how many layers run each candidate, the most used first."""
    return " ".join(f"{c}:{n}" for c, n in pd.Series(assignment).value_counts().items())


def frontier_view(run: Run, all_points: bool = False) -> pd.DataFrame:
    """The shown points: label, predicted loss, the objectives, the measured metric (when
    validated), the device's budget columns, and the formats: the layers per candidate, the most
    used first (``w8a8:3 w4a8:2 w4a4:1``)."""
    frontier = shown_points(run, all_points).copy()
    measured = frontier["measured_metric"].notna().any()
    shown = ["point", "label", "predicted_loss", *run.objectives, *(["measured_metric"] if measured else [])]
    if all_points and measured:
        frontier["beaten"] = ["yes" if flag is True else "" for flag in frontier["dominated"].astype(object)]
        shown.append("beaten")
    deployed = stored_latency(run)
    if deployed is not None:  # beside the prediction: measured end to end in ONNX Runtime
        frontier["ort_latency_s"] = frontier["point"].map(deployed)
        shown.insert(3 + len(run.objectives), "ort_latency_s")
    frontier["formats"] = [formats_summary(run.assignment(int(p))) for p in frontier["point"]]
    shown += [*budget_columns(run), "formats"]
    return frontier[shown].rename(columns={"measured_metric": run.record["metric_name"]}).reset_index(drop=True)


def _fewer_formats(formats: pd.Series, width: int) -> pd.Series:
    """Each point's formats cut to the most used that fit in ``width``, ``+N`` counting the layers
    of the others (at least the most used one is kept)."""

    def cut(text: str) -> str:
        words = text.split(" ")
        for keep in range(len(words), 0, -1):
            rest = sum(int(word.rpartition(":")[2]) for word in words[keep:])
            short = " ".join(words[:keep]) + (f" +{rest}" if rest else "")
            if cell_len(short) <= width:
                break
        return short

    return formats.map(cut)


def print_frontier(console: Console, run: Run, all_points: bool = False, wide: bool = False) -> None:
    """The frontier table at the console's width: the label, the predicted loss (once points are
    measured), the device's budget columns, then the formats are left out, in that order, once the
    formats cut to the most used no longer make room."""
    view = frontier_view(run, all_points)
    measured = run.record["metric_name"] in view.columns
    budgets = budget_columns(run)
    print_table(
        console,
        view,
        title=f"run {run.id}: {plain(run.record['task_name'])} on {plain(run.target)}",
        optional=["label", *(["predicted_loss"] if measured else []), *reversed(budgets), "formats"],
        fill=Fill(
            "formats", _fewer_formats, "formats: layers per candidate, the most used first; +N: layers in others"
        ),
        wide=wide,
    )


def print_run(console: Console, run: Run, all_points: bool = False, wide: bool = False) -> None:
    record = run.record
    print_frontier(console, run, all_points, wide)
    summary = [f"status {run.status}"]
    device, executor = record["settings"].get("device", "cpu"), record["settings"].get("executor")
    if device != "cpu" or executor:  # said only where it ran past this machine's CPU
        summary.append(f"ran on {device}" + (f" with {executor}" if executor else ""))
    if record["float_metric"] is not None:
        summary.append(f"float32 {record['metric_name']} {record['float_metric']:.4f}")
        summary.append(f"{record['evaluations']} evaluations")
        hidden = int(run.frontier["measured_metric"].notna().sum()) - len(shown_points(run, all_points))
        if hidden > 0:
            summary.append(f"{hidden} validated points beaten on measurement hidden (--all shows them)")
    summary.append(run.quantizer.summary())
    best = _best_within_drop(run)
    if best is not None:
        summary.append(f"cheapest within a drop of {record['settings']['max_drop']}: point {best}")
    note = run.rank_note
    if note:
        summary.append(note)
    if record.get("error"):
        summary.append(f"error: {plain(record['error'])}")
    print_parts(console, summary)


def print_compare(console: Console, first: Run, second: Run, layers: pd.DataFrame, wide: bool = False) -> None:
    """``mpq compare``: what differs between two runs (the settings they were searched with, their
    points, the layers two points set apart), and a line for each part where nothing does."""
    from mpq._compare import same_points, setting_differences

    if first.id == second.id:
        console.print(f"run {first.id} against itself: one frontier ('mpq frontier {first.id}' shows it).")
    else:
        names = {"first": f"run {first.id}", "second": f"run {second.id}"}
        settings = setting_differences(first, second)
        if settings.empty:
            console.print(f"runs {first.id} and {second.id} were searched with the same model, data and settings.")
        else:
            hashes = settings["setting"].isin(["model", "data"])  # 12 hex digits tell them apart, as 'mpq show' does
            for side in names:
                settings.loc[hashes, side] = settings.loc[hashes, side].str[:12]
            print_table(
                console, settings.rename(columns=names), title="settings that differ", wrap=list(names.values())
            )
        if same_points(first, second):
            console.print(f"runs {first.id} and {second.id} hold the same {len(first.frontier)} points.")
        else:
            for run in (first, second):
                print_frontier(console, run, wide=wide)
    a, b = layers.attrs["points"]
    pair = f"run {first.id} point {a} and run {second.id} point {b}"
    changed = layers[layers["changed"]]
    if changed.empty:
        console.print(f"{pair} give every layer the same candidate.")
        return
    console.print(f"{len(changed)} of {len(layers)} layers differ between {pair}:")
    view = changed[["layer", "candidate_first", "candidate_second"]].rename(
        columns={"candidate_first": f"run {first.id} point {a}", "candidate_second": f"run {second.id} point {b}"}
    )
    print_table(console, view, wide=wide)


class StageProgress:
    """One progress line per pipeline stage, on stderr so --json stays clean; shown from the first
    report on, so a command that fails before any work prints its error line alone. The stages
    run one after another: a stage that reports marks the others done, and a clean exit marks the
    last one, so the frame left on screen shows every stage done (a failed one stays where it
    stopped). The columns fit 80 terminal columns; a long message wraps in its own column.

    On a stderr that is no terminal (a pipe, a log file) a bar would show nothing until the end:
    there each stage prints plain lines as it goes (:class:`_ProgressLines`)."""

    def __init__(self, console: Console) -> None:
        self.lines = None if console.is_terminal else _ProgressLines(console)
        self.bar = Progress(
            TextColumn("{task.description}", table_column=Column(no_wrap=True, min_width=len("validate"))),
            BarColumn(bar_width=10),
            TextColumn("{task.completed}/{task.total}", justify="right", table_column=Column(no_wrap=True)),
            TimeElapsedColumn(table_column=Column(no_wrap=True)),
            TextColumn("{task.fields[message]}", table_column=Column(overflow="fold")),
            console=console,
        )
        self.tasks: dict[str, TaskID] = {}

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        if self.lines is not None:
            self.lines(stage, done, total, message)
            return
        if not self.tasks:
            self.bar.start()
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task(stage, total=max(total, 1), message=message)
        self._finish(but=self.tasks[stage])
        self.bar.update(self.tasks[stage], completed=done, total=max(total, 1), message=message)

    def _finish(self, but: TaskID | None = None) -> None:
        """Mark every stage but ``but`` done, its count what it did (a probe that stopped at 27 of
        at most 200 samples: 27/27)."""
        for task in self.bar.tasks:
            if task.id != but and task.completed < task.total:
                done = max(int(task.completed), 1)
                self.bar.update(task.id, completed=done, total=done)

    def __enter__(self) -> StageProgress:
        return self

    def __exit__(self, kind, *exc) -> None:
        if self.tasks:
            if kind is None:
                self._finish()
            self.bar.stop()


class _ProgressLines:
    """Progress as plain lines, one when a stage starts, then one each tenth of its total (each
    evaluation of a validation of 10 or fewer) or each :attr:`every_s` seconds it moved on, and
    one when it is done: what a log file shows while a search runs (a probe that converges at 27
    of at most 200 samples still says where it is)."""

    every_s = 30.0

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.monotonic()
        self.shown: dict[str, tuple[int, float]] = {}  # stage -> the count its last line showed, and when

    def __call__(self, stage: str, done: int, total: int, message: str) -> None:
        now = time.monotonic()
        last, at = self.shown.get(stage, (None, now))
        total = max(total, 1)
        if last == done:
            return
        if last is not None and done != total and done - last < max(total // 10, 1) and now - at < self.every_s:
            return
        self.shown[stage] = (done, now)
        elapsed = now - self.started
        self.console.print(
            f"mpq: {stage} {done}/{total}, {elapsed:.0f} s: {message}", markup=False, highlight=False, soft_wrap=True
        )
