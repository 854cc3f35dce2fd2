"""views.py, exports.py and queries.py: the tables, exports and store arguments behind the pages."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from app_support import app_module

import mpq

views, exports, queries = app_module("views"), app_module("exports"), app_module("queries")


def test_formats_summary_and_bits():
    assert views.formats_summary({"a": "w8a8", "b": "w4a8", "c": "w8a8"}) == "w8a8:2 w4a8:1"
    bits = views.format_bits(["wmxfp4a8", "w4a8", "wmxfp4a8"])
    assert bits.to_dict("records") == [
        {"candidate": "wmxfp4a8", "weight_format": "mxfp4", "act_format": "int8", "weight_bits": 4.25, "act_bits": 8.0},
        {"candidate": "w4a8", "weight_format": "int4_pc", "act_format": "int8", "weight_bits": 4.0, "act_bits": 8.0},
    ]


def test_filter_runs_by_model_target_status_and_day():
    runs = pd.DataFrame(
        {
            "run": [1, 2, 3, 4],
            "task": ["cnn", "cnn", "mlp", "cnn"],
            "target": ["zcu104", "h100", "zcu104", "zcu104"],
            "status": ["done", "done", "failed", "running"],
            "created_at": pd.to_datetime(
                ["2026-01-01 10:00", "2026-01-02 23:59", "2026-01-03 00:00", "2026-01-03 12:00"]
            ),
        }
    )
    assert list(views.filter_runs(runs)["run"]) == [4, 3, 2, 1]
    assert list(views.filter_runs(runs, tasks=["cnn"], targets=["zcu104"])["run"]) == [4, 1]
    assert list(views.filter_runs(runs, statuses=["done", "failed"])["run"]) == [3, 2, 1]
    assert list(views.filter_runs(runs, dates=(date(2026, 1, 2), date(2026, 1, 2)))["run"]) == [2]
    assert list(views.filter_runs(runs, dates=(date(2026, 1, 3), date(2026, 1, 9)))["run"]) == [4, 3]


def test_run_label_and_best_point(store):
    runs = mpq.list_runs(store.db)
    gpu = store.ids["gpu"]
    assert views.run_label(gpu, runs) == f"#{gpu} digits-cnn on h100-sxm · latency_s,weight_bytes (done)"
    assert views.run_label(999, runs) == "#999"
    run = store.runs["fpga"]
    assert views.best_point(run) == int(run.best().point)


def test_frontier_points_carry_the_stored_onnxruntime_latency(store):
    run = store.runs["fpga"]
    assert "ort_latency_s" not in views.frontier_points(run)  # never measured
    first = int(run.frontier["point"].iloc[0])
    table = pd.DataFrame({"point": [first], "ort_latency_s": [0.002]})
    measured = mpq.Run(
        run.id, run.db, run.status, run.record, run.frontier, run.assignments, run.tables | {views.ORT_TABLE: table}
    )
    latency = views.frontier_points(measured).set_index("point")["ort_latency_s"]
    assert latency[first] == 0.002 and latency.drop(first).isna().all()


def test_axis_choices_and_shared_axes(store):
    gpu, mcu = store.runs["gpu"], store.runs["mcu"]
    assert views.axis_choices(gpu)[:3] == ["latency_s", "weight_bytes", "predicted_loss"]
    assert "measured_metric" not in views.axis_choices(gpu)
    shared = views.shared_axes([gpu, mcu])
    assert shared[:2] == ["measured_metric", "predicted_loss"]
    assert {"latency_s", "energy_j", "weight_bytes"} <= set(shared) and "flash_bytes" not in shared  # MCU only
    assert views.shared_axes([]) == []


def test_layer_view_rejects_unknown_points_in_one_line(store):
    run = store.runs["fpga"]
    with pytest.raises(
        mpq.exceptions.InvalidParameterError, match=rf"^point: run {run.id} has no point 99; choose one of 0, 1, "
    ):
        views.layer_view(run, 99)


def test_point_diff_of_one_point_with_itself_and_of_two_models(store):
    run = store.runs["fpga"]
    same = views.point_diff(run, 0, run, 0)
    assert not same.changed.any() and (same.delta_weight_bits == 0).all()
    with pytest.raises(mpq.exceptions.InvalidParameterError, match="quantize different layers"):
        views.point_diff(run, 0, store.runs["mlp"], 0)


@pytest.mark.parametrize(
    ("selection", "point"),
    [
        (None, None),
        ({}, None),
        ({"points": []}, None),
        ({"points": [{"x": 1.0}]}, None),
        ({"points": [{"customdata": [7]}, {"customdata": [3]}]}, 7),
        ({"points": [{"x": 1}, {"customdata": [2.0]}]}, 2),
    ],
)
def test_point_from_selection(selection, point):
    assert views.point_from_selection(selection) == point


def test_calibration_points_are_the_validated_ones(store):
    run = store.runs["mcu"]
    points = views.calibration_points(run)
    assert len(points) == len(run.frontier)
    assert list(points.measured_drop) == pytest.approx(list(run.record["float_metric"] - run.frontier.measured_metric))


def test_exports_are_json_and_name_bad_formats(store):
    run = store.runs["fpga"]
    name, mime, text = exports.export_file(run, 1, "json")
    assert (name, mime) == (f"mpq-run{run.id}-point1-point.json", "application/json")
    assert json.loads(text) == run.export(1, "json")
    with pytest.raises(
        mpq.exceptions.UnknownNameError,
        match=r"^unknown export format 'hawk'; choose one of compressed-tensors, hawq, json, onnx, qonnx \(did you mean 'hawq'\?\)\.$",
    ):
        exports.export_file(run, 1, "hawk")
    with pytest.raises(mpq.exceptions.InvalidParameterError, match=rf"^run {run.id} has no point 42; "):
        exports.export_file(run, 42, "json")


def test_a_model_file_export_downloads_as_the_bytes_run_export_writes(store, monkeypatch):
    exported = mpq.Run.export

    def export(run, point, to="json", out=None, model=None):  # as mpq does: the model file written at ``out``
        if to not in exports.MODEL_FILES:
            return exported(run, point, to)
        Path(out).write_bytes(b"\x08\x07" + to.encode())
        return Path(out)

    monkeypatch.setattr(mpq.Run, "export", export)
    run = store.runs["fpga"]
    assert exports.export_file(run, 1, "onnx") == (
        f"mpq-run{run.id}-point1-qdq.onnx",
        "application/octet-stream",
        b"\x08\x07onnx",
    )
    assert exports.export_file(run, 1, "qonnx")[::2] == (f"mpq-run{run.id}-point1-qonnx.onnx", b"\x08\x07qonnx")


@pytest.mark.slow
def test_model_file_downloads_run_in_onnx_runtime_and_qonnx(store):
    """The real exports behind the Build buttons: the digits CNN's point runs in ONNX Runtime and
    QONNX's executor and agrees with mpq.apply on its calibration batch; float points are refused."""
    import onnx
    import onnxruntime
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.core.onnx_exec import execute_onnx

    run = store.runs["fpga"]
    point = int(run.frontier.point.iloc[0])
    task = mpq.load_task(run.record["model_spec"])
    images = task.calibration[0][0][:8]
    with torch.no_grad():
        expected = mpq.apply(task.model, run.assignment(point), calibration=task.calibration)(images).numpy()
    _, _, qdq = exports.export_file(run, point, "onnx")
    session = onnxruntime.InferenceSession(qdq, providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {session.get_inputs()[0].name: images.numpy()})
    assert (got.argmax(1) == expected.argmax(1)).all()
    _, _, quant = exports.export_file(run, point, "qonnx")
    wrapper = ModelWrapper(onnx.load_from_string(quant))
    name, output = wrapper.graph.input[0].name, wrapper.graph.output[0].name
    got = [execute_onnx(wrapper, {name: image[None].numpy()})[output] for image in images]  # traced shapes: one sample
    np.testing.assert_allclose(np.concatenate(got), expected, atol=1e-4)
    gpu = store.runs["gpu"]
    floating = next(
        int(p)
        for p in gpu.frontier.point
        if any(mpq.get_candidate(c).weight_format.family != "int" for c in gpu.assignment(int(p)).values())
    )
    with pytest.raises(mpq.exceptions.InvalidParameterError, match=rf"^run {gpu.id} point {floating}"):
        exports.export_file(gpu, floating, "qonnx")


def test_the_page_offers_exactly_the_exports_mpq_writes(store):
    refused = {}
    for key in ("fpga", "mcu", "gpu", "mlp"):
        run = store.runs[key]
        for point in map(int, run.frontier.point):
            for fmt in (f for f in exports.EXPORT_FORMATS if f not in exports.MODEL_FILES):  # test above
                try:
                    exports.export_file(run, point, fmt)
                except mpq.exceptions.InvalidParameterError as exc:
                    refused.setdefault((key, fmt), []).append(str(exc))
    # The GPU run has points with float weights; the digits CNN's conv layers are no compressed-tensors
    # layers; the MLP's Linear layers in INT formats are exported every way.
    assert set(refused) == {
        ("gpu", "hawq"),
        ("fpga", "compressed-tensors"),
        ("mcu", "compressed-tensors"),
        ("gpu", "compressed-tensors"),
    }
    for (_, fmt), reasons in refused.items():
        for reason in reasons:  # the page's words: its own buttons, not the command line's flags
            assert reason.endswith("export it as json instead.") and "--" not in reason
            assert ("HAWQ-V3's bit_config holds integer bit widths" in reason) == (fmt == "hawq")


def test_measured_metric_nan_exports_as_null(store):
    run = store.runs["fpga"]
    frontier = run.frontier.assign(measured_metric=float("nan"))
    unvalidated = mpq.Run(
        id=run.id,
        db=run.db,
        status="done",
        record={**run.record, "float_metric": None},
        frontier=frontier,
        assignments=run.assignments,
        tables=run.tables,
    )
    exported = json.loads(exports.export_file(unvalidated, 0, "json")[2])  # strict JSON: NaN refused
    assert exported["measured_metric"] is None


@pytest.mark.parametrize(
    ("argv", "environ", "db"),
    [
        (["--db", "a.db"], {"MPQ_DB": "b.db"}, "a.db"),
        (["--server.port", "1", "--db=sqlite:///x.db"], {}, "sqlite:///x.db"),
        ([], {"MPQ_DB": "b.db"}, "b.db"),
        (["-q", "tests"], {}, None),
        (["--d", "a.db"], {}, None),  # no abbreviations: pytest's or streamlit's own flags never match
    ],
)
def test_db_from_args(argv, environ, db):
    assert queries.db_from_args(argv, environ) == db


def test_load_run_reads_a_run_in_progress_afresh(store, monkeypatch):
    calls = []
    monkeypatch.setattr(mpq, "open_run", lambda db, run_id: calls.append(run_id) or run_id)
    assert queries.load_run(store.db, 8, pd.NaT) == 8 and queries.load_run(store.db, 8, None) == 8
    assert calls == [8, 8]
    finished = datetime(2026, 1, 1, 12, 0)
    assert queries.load_run(store.db, 9, finished) == queries.load_run(store.db, 9, finished) == 9
    assert calls == [8, 8, 9]  # the finished run was read once, then cached


def test_app_uses_only_mpqs_public_names():
    import ast

    from app_support import APP_DIR

    files = sorted(APP_DIR.rglob("*.py"))
    assert len(files) >= 9 and not (APP_DIR / "__init__.py").exists()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                assert all(a.name == "mpq" or not a.name.startswith("mpq") for a in node.names), path
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mpq"):
                assert node.module == "mpq" and {a.name for a in node.names} <= set(mpq.__all__), path
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "mpq":
                assert node.attr in mpq.__all__, f"{path.name}: mpq.{node.attr}"
