"""The dashboard driven through Streamlit's AppTest on a store filled by real searches."""

from __future__ import annotations

import base64
import json
import shutil
import socket
import sqlite3
import subprocess
import sys
import warnings
from contextlib import closing
from pathlib import Path

import numpy as np
import pytest
from app_support import ENTRYPOINT, PAGES, app_module
from scipy.stats import spearmanr
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

import mpq

views = app_module("views")
charts = app_module("charts")


def _figures(at) -> list[dict]:
    return [_figure_json(chart) for chart in at.get("plotly_chart")]


def _figure(at, title_start: str) -> dict:
    found = [f for f in _figures(at) if f["layout"]["title"]["text"].startswith(title_start)]
    assert len(found) == 1, [f["layout"]["title"]["text"] for f in _figures(at)]
    return found[0]


def _plain(value):
    """Plotly's JSON writes numeric arrays as typed arrays (base64 ``bdata``): back to lists."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=value["dtype"])
        if "shape" in value:
            array = array.reshape([int(n) for n in str(value["shape"]).split(",")])
        return array.tolist()
    return value


def _figure_json(chart) -> dict:
    figure = json.loads(chart.proto.spec)
    figure["data"] = [{k: _plain(v) for k, v in trace.items()} for trace in figure["data"]]
    return figure


def _traces(figure: dict, name: str, axis: str = "y") -> list[dict]:
    return [t for t in figure["data"] if t.get("name") == name and t.get("yaxis", "y") == axis]


def _texts(elements) -> str:
    return " | ".join(str(e.value) for e in elements)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_on_every_store_without_exception(store, empty_db, open_app, page):
    read_only = f"sqlite:///file:{store.db}?mode=ro&uri=true"  # a store SQLite refuses every write to
    for db in (store.db, empty_db, read_only):
        at = open_app(db, page)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, _texts(at.error)


def test_runs_page_counts_lists_and_filters(store, open_app):
    at = open_app(store.db)
    counts = {m.label: m.value for m in at.metric}
    assert counts == {"all runs": "6", "done runs": "4", "running runs": "1", "stopped runs": "0", "failed runs": "1"}
    table = at.dataframe[0].value
    assert list(table["run"]) == sorted(store.ids.values(), reverse=True)  # newest first
    assert list(at.dataframe[0].proto.column_order) == ["run", "status", "task", "target", "objectives"]
    assert {"points", "spearman", "created_at", "owner"} <= set(table.columns)  # one toolbar click away

    at.multiselect(key="filter_targets").set_value(["stm32h743"]).run()
    table = at.dataframe[0].value
    assert set(table["run"]) == {store.ids["mcu"], store.ids["failed"]}
    at.multiselect(key="filter_statuses").set_value(["failed"]).run()
    assert list(at.dataframe[0].value["run"]) == [store.ids["failed"]]
    at.multiselect(key="filter_targets").set_value([]).run()
    at.multiselect(key="filter_statuses").set_value([]).run()
    at.multiselect(key="filter_tasks").set_value(["digits-mlp"]).run()
    assert set(at.dataframe[0].value["run"]) == {store.ids["mlp"], store.ids["failed"]}
    assert "2 of 6 runs shown" in _texts(at.caption)


def test_sidebar_starts_on_the_newest_finished_run_or_the_linked_one(store, open_app, monkeypatch):
    at = open_app(store.db)
    newest_done = max(store.ids[k] for k in ("fpga", "mcu", "gpu", "mlp"))
    assert at.sidebar.selectbox(key="run").value == newest_done
    assert f"Store: {views.plain(store.db)} (set by mpq dashboard --db" in _texts(at.sidebar.caption)  # from $MPQ_DB

    monkeypatch.setenv("MPQ_DB", store.db)
    linked = AppTest.from_file(str(ENTRYPOINT), default_timeout=60)
    linked.query_params["run"] = str(store.ids["gpu"])
    linked.run()
    assert linked.sidebar.selectbox(key="run").value == store.ids["gpu"]
    assert linked.query_params["run"] in (str(store.ids["gpu"]), [str(store.ids["gpu"])])


def test_frontier_chart_shows_points_baselines_and_the_measured_metric(store, open_app):
    run = store.runs["fpga"]
    at = open_app(store.db, "app_pages/frontier.py", run.id)
    assert at.title[0].value == f"Run {run.id}: digits-cnn on zcu104"
    figure = _figure(at, f"Frontier of run {run.id}")
    frontier = run.frontier.sort_values("latency_s")
    beaten = frontier.dominated.fillna(False).astype(bool)
    points, baselines = frontier[~frontier.is_baseline & ~beaten], frontier[frontier.is_baseline & ~beaten]
    if beaten.any():  # greyed in a trace of their own
        (grey,) = _traces(figure, "beaten on measurement", "y")
        assert sorted(c[0] for c in grey["customdata"]) == sorted(frontier.point[beaten])
    (top,) = _traces(figure, "frontier", "y")
    (bottom,) = _traces(figure, "frontier", "y2")
    assert [c[0] for c in top["customdata"]] == list(points.point)
    assert top["x"] == pytest.approx(list(points.latency_s)) and top["y"] == pytest.approx(list(points.predicted_loss))
    # The metric panel spans the measured values; points far below them sit on its bottom edge.
    low, high, cut = charts.metric_range(frontier.measured_metric, run.record["float_metric"])
    assert figure["layout"]["yaxis2"]["range"] == pytest.approx([low, high])
    on_axis = points.measured_metric if cut is None else points.measured_metric.mask(points.measured_metric < cut, low)
    assert bottom["y"] == pytest.approx(list(on_axis))
    (marks,) = _traces(figure, "uniform baselines", "y")
    assert marks["marker"]["symbol"] == "diamond" and "text" not in marks
    named = [h.split("<br>")[0].split(" (")[1].rstrip(")") for h in marks["hovertext"]]
    assert sorted(named) == sorted(baselines.label)
    # Hover: every point's own summary (its formats, its measured metric).
    first = int(points.point.iloc[0])
    assert views.formats_summary(run.assignment(first)) in top["hovertext"][0]
    assert f"accuracy: {points.measured_metric.iloc[0]:.4g}" in top["hovertext"][0]
    # The float32 metric is the dashed line of the bottom panel.
    assert [s["y0"] for s in figure["layout"]["shapes"]] == pytest.approx([run.record["float_metric"]])


def test_axes_can_be_any_two_objectives(store, open_app):
    run = store.runs["gpu"]
    at = open_app(store.db, "app_pages/frontier.py", run.id)
    assert at.selectbox(key=f"x_{run.id}").options[:3] == [
        "latency_s (s)",
        "weight_bytes (bytes)",
        "predicted_loss (summed omega)",
    ]
    at.selectbox(key=f"x_{run.id}").set_value("weight_bytes")
    at.selectbox(key=f"y_{run.id}").set_value("energy_j")
    at.run()
    figure = _figure(at, f"Frontier of run {run.id}")
    drawn = {}  # every point, in whichever trace it is drawn (frontier, baseline or beaten)
    for name in ("frontier", "uniform baselines", "beaten on measurement"):
        for trace in _traces(figure, name, "y"):
            drawn |= {int(c[0]): (x, y) for c, x, y in zip(trace["customdata"], trace["x"], trace["y"])}
    assert sorted(drawn) == sorted(run.frontier.point)
    for point, weight_bytes, energy_j in zip(run.frontier.point, run.frontier.weight_bytes, run.frontier.energy_j):
        assert drawn[int(point)] == pytest.approx((weight_bytes, energy_j))
    assert figure["layout"]["xaxis2"]["title"]["text"] == "weight_bytes (bytes)"


def test_selected_point_shows_its_formats_per_layer(store, open_app):
    run = store.runs["fpga"]
    at = open_app(store.db, "app_pages/frontier.py", run.id)
    assert at.selectbox(key=f"point_{run.id}").value == int(run.best().point)
    point = int(run.frontier.point.iloc[1])
    at.selectbox(key=f"point_{run.id}").set_value(point).run()

    assignment = run.assignment(point)
    bits = _figure(at, f"Bits per layer, point {point}")
    bars = [t for t in bits["data"] if t["type"] == "bar"]
    shown = {layer: (trace["name"], y) for trace in bars for layer, y in zip(trace["x"], trace["y"])}
    assert {layer: name for layer, (name, _) in shown.items()} == assignment
    for name, y in shown.values():
        assert y == mpq.get_candidate(name).weight_format.bits_per_value
    (acts,) = [t for t in bits["data"] if t["name"] == "activation bits"]
    assert acts["y"] == [mpq.get_candidate(assignment[layer]).act_format.bits_per_value for layer in acts["x"]]
    assert bits["layout"]["xaxis"]["categoryarray"] == list(run.tables["layers"].layer)  # model order

    # A few columns show at first (the page stays narrow); the others are in the table, hidden.
    assert list(at.dataframe[0].proto.column_order) == ["layer", "candidate", "omega", "latency_s"]
    table = at.dataframe[0].value
    assert dict(zip(table.layer, table.candidate)) == assignment
    sensitivity = run.tables["sensitivity"].query("probe == 'hessian_w'").set_index("layer")["value"]
    assert list(table.sensitivity_hessian_w) == pytest.approx([sensitivity[layer] for layer in table.layer])
    costs = run.tables["costs"].set_index(["layer", "candidate"])
    assert list(table.luts) == [costs.loc[(layer, assignment[layer]), "luts"] for layer in table.layer]
    # The layer costs add up to the point's frontier cost.
    frontier_row = run.frontier.set_index("point").loc[point]
    assert table.latency_s.sum() == pytest.approx(frontier_row.latency_s)
    assert table.omega.sum() == pytest.approx(frontier_row.predicted_loss)
    # A chart click selects the same way: the click's customdata is the point id.
    assert views.point_from_selection({"points": [{"customdata": [point]}]}) == point


@pytest.fixture
def served(monkeypatch) -> dict[str, tuple[str, bytes]]:
    """File name -> (MIME type, bytes) of every download the page serves."""
    files = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def spy(self, data, mimetype, kind, filename=None):
        files[filename] = (mimetype, data)
        return original(self, data, mimetype, kind, filename)

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", spy)
    return files


def test_export_buttons_serve_the_selected_point(store, open_app, served):
    run = store.runs["fpga"]
    point = int(run.frontier.point.iloc[2])
    at = open_app(store.db, "app_pages/frontier.py", run.id)
    at.selectbox(key=f"point_{run.id}").set_value(point).run()
    assert [b.label for b in at.get("download_button")] == ["Download json", "Download hawq"]
    assert (  # the digits CNN's conv layers
        f"compressed-tensors: run {run.id} point {point}: compressed-tensors quantizes Linear and Embedding layers only"
        in _texts(at.caption)
    )

    mime, data = served[f"mpq-run{run.id}-point{point}-point.json"]
    exported = json.loads(data)
    row = run.frontier.set_index("point").loc[point]
    assert mime == "application/json"
    assert exported == run.export(point, "json")  # exactly what `mpq export RUN --point K` writes
    assert {layer: spec["candidate"] for layer, spec in exported["layers"].items()} == run.assignment(point)
    assert (exported["run"], exported["point"], exported["target"]) == (run.id, point, "zcu104")
    assert exported["costs"]["latency_s"] == pytest.approx(row.latency_s)
    assert exported["measured_metric"] == pytest.approx(row.measured_metric)

    (hawq,) = json.loads(served[f"mpq-run{run.id}-point{point}-hawq-bit-config.json"][1]).values()
    assert hawq == {layer: int(c[1]) for layer, c in run.assignment(point).items()}  # wNaM: N weight bits

    linear = store.runs["mlp"]  # Linear layers only: compressed-tensors expresses every point
    at = open_app(store.db, "app_pages/frontier.py", linear.id)
    point = int(at.selectbox(key=f"point_{linear.id}").value)
    assert [b.label for b in at.get("download_button")][-1] == "Download compressed-tensors"
    mime, data = served[f"mpq-run{linear.id}-point{point}-quantization_config.json"]
    assert mime == "application/json" and json.loads(data) == linear.export(point, "compressed-tensors")


def test_hawq_export_refuses_non_integer_formats_in_one_line(store, open_app):
    run = store.runs["gpu"]
    floating = next(
        int(p)
        for p in run.frontier.point
        if any(mpq.get_candidate(c).weight_format.family != "int" for c in run.assignment(int(p)).values())
    )
    at = open_app(store.db, "app_pages/frontier.py", run.id)
    at.selectbox(key=f"point_{run.id}").set_value(floating).run()
    assert [b.label for b in at.get("download_button")] == ["Download json"]
    captions = _texts(at.caption)
    assert f"hawq: run {run.id} point {floating}: HAWQ-V3's bit_config holds integer bit widths" in captions
    assert "export it as json instead." in captions and "--to" not in captions  # no command-line flags


def test_failed_run_is_shown_plainly(store, open_app):
    for page in ("app_pages/frontier.py", "app_pages/calibration.py"):
        at = open_app(store.db, page, store.ids["failed"])
        assert not at.exception
        assert f"Run {store.ids['failed']} failed" in _texts(at.error)
        assert "RuntimeError: held-out data went missing" in _texts(at.error)
        assert not at.get("plotly_chart")


def test_run_in_progress_is_shown_plainly(store, open_app):
    at = open_app(store.db, "app_pages/frontier.py", store.ids["running"])
    assert not at.exception and not at.error
    assert f"Run {store.ids['running']} is still running" in _texts(at.info)
    assert "stored so far: costs, layers, omega, proxy, sensitivity" in _texts(at.info)
    assert list(at.dataframe[0].value.layer) == list(store.runs["fpga"].tables["layers"].layer)


def test_stopped_run_says_how_to_finish_it(store, open_app, tmp_path):
    # The run caught in progress, but its process has since ended (a kill -9).
    db = tmp_path / "stopped.db"
    shutil.copy(store.db, db)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with closing(sqlite3.connect(db)) as connection, connection:
        connection.execute(
            "UPDATE runs SET owner = ? WHERE id = ?", (f"{socket.gethostname()}:{gone.pid}", store.ids["running"])
        )
    at = open_app(str(db), "app_pages/frontier.py", store.ids["running"])
    assert not at.exception and not at.error
    assert f"Run {store.ids['running']} stopped without finishing" in _texts(at.warning)
    assert f"mpq search --resume {store.ids['running']}" in " ".join(c.value for c in at.caption)
    runs_page = open_app(str(db), "app_pages/runs.py")
    assert [m.value for m in runs_page.metric if m.label == "stopped runs"] == ["1"]


def test_empty_store_says_so_on_every_page(empty_db, open_app):
    for page in PAGES:
        at = open_app(empty_db, page)
        assert f"No runs in `{empty_db}` yet" in _texts(at.info)
        assert not at.sidebar.selectbox and not at.get("plotly_chart")


def test_unreadable_store_is_one_line_not_a_traceback(tmp_path, open_app):
    missing = tmp_path / "nowhere.db"
    at = open_app(str(missing))
    assert not at.exception
    message = _texts(at.error)
    assert message.startswith("Cannot read the store: ") and "no store at" in message and "\n" not in message
    assert not missing.exists()  # read only: nothing created


def test_unreachable_postgresql_store_is_one_line_without_its_password(open_app):
    # Nothing listens on port 1; without psycopg installed, the driver is what is missing.
    at = open_app("postgresql+psycopg://mpq:secret@127.0.0.1:1/mpq")
    assert not at.exception
    message = _texts(at.error)
    assert message.startswith("Cannot read the store: ") and "\n" not in message and "secret" not in message


def test_compare_puts_several_runs_on_one_chart(store, open_app):
    at = open_app(store.db, "app_pages/compare.py", store.ids["fpga"])
    picked = at.multiselect(key="compare_runs").value
    assert picked[0] == store.ids["fpga"] and set(picked) == {store.ids[k] for k in ("fpga", "mcu", "gpu")}
    figure = _figure(at, "3 runs: accuracy against latency_s (s)")
    assert figure["layout"]["yaxis"]["title"]["text"] == "accuracy"  # the task's metric, not the column
    for key in ("fpga", "mcu", "gpu"):
        run = store.runs[key]
        label = views.run_label(run.id, mpq.list_runs(store.db))
        (line,) = _traces(figure, label)
        points = run.frontier[~run.frontier.is_baseline].sort_values("latency_s")
        assert line["x"] == pytest.approx(list(points.latency_s))
        assert line["y"] == pytest.approx(list(points.measured_metric))
        assert len(_traces(figure, f"{label} baselines")[0]["x"]) == int(run.frontier.is_baseline.sum())
    assert figure["layout"]["xaxis"]["type"] == "log"

    # Two models on one target.
    at.multiselect(key="compare_runs").set_value([store.ids["fpga"], store.ids["mlp"]]).run()
    assert len([t for t in _figure(at, "2 runs")["data"] if not t["name"].endswith("baselines")]) == 2


def test_compare_diffs_two_points_layer_by_layer(store, open_app):
    fpga, mcu = store.runs["fpga"], store.runs["mcu"]
    at = open_app(store.db, "app_pages/compare.py", fpga.id)
    at.selectbox(key="diff_run_a").set_value(fpga.id)
    at.selectbox(key="diff_run_b").set_value(mcu.id)
    at.run()
    point_a, point_b = int(fpga.frontier.point.iloc[0]), int(mcu.frontier.point.iloc[-1])
    at.selectbox(key=f"diff_point_a_{fpga.id}").set_value(point_a)
    at.selectbox(key=f"diff_point_b_{mcu.id}").set_value(point_b)
    at.run()
    diff = at.dataframe[0].value
    a, b = fpga.assignment(point_a), mcu.assignment(point_b)
    assert list(diff.layer) == list(a)
    assert list(diff.changed) == [a[layer] != b[layer] for layer in diff.layer]
    assert list(diff.delta_weight_bits) == [
        mpq.get_candidate(b[layer]).weight_format.bits_per_value
        - mpq.get_candidate(a[layer]).weight_format.bits_per_value
        for layer in diff.layer
    ]
    assert f"{int(diff.changed.sum())} of {len(a)} layers change format" in _texts(at.caption)

    # Different models have different layers: said plainly.
    at.selectbox(key="diff_run_b").set_value(store.ids["mlp"]).run()
    assert "cannot be compared layer by layer" in _texts(at.info) and not at.exception


@pytest.mark.parametrize("key", ["fpga", "mcu"])
def test_calibration_scatter_carries_the_runs_spearman(store, open_app, key):
    run = store.runs[key]
    at = open_app(store.db, "app_pages/calibration.py", run.id)
    figure = _figure(at, f"Run {run.id}: predicted loss against measured drop")
    shown = sorted((x, y) for t in figure["data"] for x, y in zip(t["x"], t["y"]))
    expected = sorted(zip(run.frontier.predicted_loss, run.record["float_metric"] - run.frontier.measured_metric))
    assert np.array(shown) == pytest.approx(np.array(expected))
    xs, ys = [x for x, _ in shown], [y for _, y in shown]
    rho = run.record["spearman"]
    if rho is None:  # every point measured the same, or within what the held-out set resolves
        assert figure["layout"]["title"]["text"].endswith("(Spearman ρ = n/a)")
        assert len(set(ys)) == 1 or run.rank_note.startswith("no rank correlation")
        assert f"Here: {run.rank_note}." in _texts(at.caption)
    else:  # the stored correlation is the one of the points on the chart
        assert figure["layout"]["title"]["text"].endswith(f"(Spearman ρ = {rho:.3f})")
        assert spearmanr(xs, ys).statistic == pytest.approx(rho)
    table = at.dataframe[0].value
    assert set(table.run) == {store.ids[k] for k in ("fpga", "mcu", "gpu", "mlp")}


def test_model_files_are_built_on_request_then_downloaded(store, open_app, served, monkeypatch):
    """ONNX and QONNX rebuild the model (seconds): a Build button, then the download of the very
    bytes run.export wrote, mpq's note on what the file stores, or mpq's refusal in one line."""
    exported, calls = mpq.Run.export, []

    def export(run, point, to="json", out=None, model=None):  # as mpq does, without rebuilding the CNN
        if to == "qonnx":
            raise mpq.exceptions.InvalidParameterError(f"run {run.id} point {point}: QONNX holds INT formats only")
        if to != "onnx":
            return exported(run, point, to)
        calls.append(point)
        warnings.warn("ONNX has no type for fp4_e2m1 weights", UserWarning, stacklevel=2)
        Path(out).write_bytes(b"onnx bytes")
        return Path(out)

    monkeypatch.setattr(mpq.Run, "export", export)
    run = store.runs["fpga"]
    at = open_app(store.db, "app_pages/frontier.py", run.id)
    point = int(at.selectbox(key=f"point_{run.id}").value)
    assert calls == [] and "Download onnx" not in [b.label for b in at.get("download_button")]
    at.button(key="build_onnx").click().run()
    assert calls == [point] and [b.label for b in at.get("download_button")][-1] == "Download onnx"
    assert served[f"mpq-run{run.id}-point{point}-qdq.onnx"] == ("application/octet-stream", b"onnx bytes")
    assert "onnx: ONNX has no type for fp4_e2m1 weights" in _texts(at.caption)
    at.run()  # kept for the point: not rebuilt on the next rerun
    assert calls == [point] and [b.label for b in at.get("download_button")][-1] == "Download onnx"
    at.button(key="build_qonnx").click().run()
    assert f"qonnx: run {run.id} point {point}: QONNX holds INT formats only" in _texts(at.caption)
    assert not at.exception
    other = int(run.frontier.point.iloc[-1])
    at.selectbox(key=f"point_{run.id}").set_value(other).run()  # another point: built anew on request
    assert "Download onnx" not in [b.label for b in at.get("download_button")]


def test_a_model_that_cannot_be_rebuilt_is_one_line_not_a_traceback(store, open_app, monkeypatch):
    """Build rebuilds the model from the run's spec: a script moved since the search is mpq's one
    line (TaskSpecError, not only InvalidParameterError), under the button."""
    exported = mpq.Run.export
    reason = "--model 'gone.py:build': file 'gone.py' does not exist; check the path."

    def export(run, point, to="json", out=None, model=None):
        if to in ("onnx", "qonnx"):
            raise mpq.exceptions.TaskSpecError(reason)
        return exported(run, point, to)

    monkeypatch.setattr(mpq.Run, "export", export)
    run = store.runs["fpga"]
    at = open_app(store.db, "app_pages/frontier.py", run.id)
    at.button(key="build_onnx").click().run()
    assert not at.exception
    assert f"onnx: {reason}" in _texts(at.caption)


#: A task file that leaves a marker beside itself when imported: the proof that it ran.
MARKER_TASK = """\
from pathlib import Path

Path(__file__).with_name("MARKER").write_text("imported")


def make_task():
    raise SystemExit(7)
"""


@pytest.fixture
def handed_over(store, tmp_path):
    """A copy of the store as someone else may hand it over: every run names a marker-writing task
    file as its model, and Markdown (a link, an image) as its task name and error."""
    (tmp_path / "evil.py").write_text(MARKER_TASK)
    spec, db = f"{tmp_path / 'evil.py'}:make_task", tmp_path / "handed-over.db"
    with closing(sqlite3.connect(store.db)) as source, closing(sqlite3.connect(db)) as copy:
        source.backup(copy)
    with closing(sqlite3.connect(db)) as copy, copy:
        copy.execute(
            "UPDATE runs SET model_spec = ?, task_name = task_name || ' [click](http://example.com/x)', "
            "error = '![pixel](http://example.com/p.png) \u202eevil' WHERE error IS NOT NULL OR 1",
            (spec,),
        )
    return str(db), spec, tmp_path / "MARKER"


def test_no_button_imports_the_task_file_a_store_names(store, handed_over, open_app):
    db, spec, marker = handed_over
    for page in PAGES:
        for run in (store.ids["fpga"], store.ids["failed"]):
            at = open_app(db, page, run)
            for button in [b for b in at.button if not b.disabled]:  # a browser cannot click the others
                button.click()
                at.run()
            assert not at.exception, [e.value for e in at.exception]
    assert not marker.exists()
    at = open_app(db, "app_pages/frontier.py", store.ids["fpga"])
    assert at.button(key="build_onnx").disabled and at.button(key="build_qonnx").disabled
    reason = f"Build is off for run {store.ids['fpga']}: its model is rebuilt by {spec!r}, a file the store names"
    assert views.plain(reason) in _texts(at.caption)
    assert views.plain(f"start the dashboard with --allow-model {spec} (or, the file moved since") in _texts(at.caption)


def test_stored_markdown_is_shown_as_written(store, handed_over, open_app):
    db, _, _ = handed_over
    at = open_app(db, "app_pages/frontier.py", store.ids["failed"])
    shown = _texts(at.header) + _texts(at.error)
    assert "\\[click\\](http://example.com/x)" in shown and "\\!\\[pixel\\](http://example.com/p.png)" in shown
    assert "\u202e" not in shown


def test_an_allowed_task_file_is_built(store, handed_over, open_app, monkeypatch):
    db, spec, marker = handed_over
    monkeypatch.setattr(sys, "argv", ["streamlit_app.py", "--allow-model", spec])
    at = open_app(db, "app_pages/frontier.py", store.ids["fpga"])
    at.button(key="build_onnx").click().run()
    assert marker.exists()  # the operator allowed it: imported; its factory's exit is mpq's one line
    assert views.plain("make_task() exited (SystemExit 7)") in _texts(at.caption) and not at.exception


def test_a_moved_task_file_is_built_from_the_allowed_spec_that_names_it_now(store, handed_over, open_app, monkeypatch):
    db, spec, marker = handed_over
    moved = marker.parent / "moved"
    moved.mkdir()
    (marker.parent / "evil.py").rename(moved / "evil.py")
    monkeypatch.setattr(sys, "argv", ["streamlit_app.py", "--allow-model", f"{moved / 'evil.py'}:make_task"])
    at = open_app(db, "app_pages/frontier.py", store.ids["fpga"])
    at.button(key="build_onnx").click().run()
    assert (moved / "MARKER").exists()  # the file where it is now was imported: the operator named it
    assert views.plain("make_task() exited (SystemExit 7)") in _texts(at.caption) and not at.exception


def test_the_page_shows_its_store_and_nothing_else_unless_allowed(store, empty_db, open_app, monkeypatch):
    at = open_app(store.db)
    assert not at.sidebar.text_input  # no widget a visitor could point at another store
    at.session_state["db"] = empty_db  # what a crafted session could send
    at.run()
    assert at.sidebar.selectbox(key="run").value == max(store.ids[k] for k in ("fpga", "mcu", "gpu", "mlp"))
    monkeypatch.setattr(sys, "argv", ["streamlit_app.py", "--choose-store"])
    at = open_app(store.db)
    at.sidebar.text_input(key="db").set_value(empty_db).run()
    assert "No runs in" in _texts(at.info)
