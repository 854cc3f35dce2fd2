"""The mpq command line: exit codes, one-line errors, the --json shapes."""

import gc
import json
from pathlib import Path

import pytest

from mpq.cli import main

ASSETS = Path(__file__).parents[1] / "assets"
FAST = ["--tolerance", "0.2", "--max-samples", "8"]


def run_cli(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    out, err = capsys.readouterr()
    return info.value.code, out, err


def cli_ok(capsys, *argv):
    try:
        main(list(argv))
    except SystemExit as exc:
        assert exc.code in (0, None), capsys.readouterr().err
    return capsys.readouterr()


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    db = str(tmp_path_factory.mktemp("cli") / "mpq.db")
    try:
        main(["search", "--db", db, "--json", *FAST])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return db


def test_search_json_shape(searched, capsys):
    out = cli_ok(capsys, "frontier", "1", "--db", searched, "--json").out
    doc = json.loads(out)
    assert doc["run"] == 1 and doc["task"] == "digits-cnn" and doc["target"] == "zcu104"
    assert doc["objectives"] == ["latency_s"] and doc["metric_name"] == "accuracy"
    point = doc["points"][0]
    assert set(point) == {
        "point",
        "label",
        "is_baseline",
        "optimal",
        "predicted_loss",
        "measured_metric",
        "dominated",
        "costs",
        "assignment",
    }
    assert doc["evaluations"] == 1 + len({json.dumps(p["assignment"], sort_keys=True) for p in doc["points"]})
    beaten = [p for p in doc["points"] if p["dominated"]]
    for p in beaten:  # each one has a point that costs no more and measures at least as well
        assert any(
            q["costs"]["latency_s"] <= p["costs"]["latency_s"]
            and q["measured_metric"] >= p["measured_metric"]
            and q["point"] != p["point"]
            for q in doc["points"]
        )
    assert set(point["assignment"]) == {"conv1", "conv2", "conv3", "conv4", "fc1", "fc2"}
    assert {"latency_s", "energy_j", "weight_bytes", "bops", "luts", "dsps", "brams"} <= set(point["costs"])


def test_runs_show_and_frontier_tables(searched, capsys):
    runs = json.loads(cli_ok(capsys, "runs", "--db", searched, "--json").out)
    assert runs[0]["run"] == 1 and runs[0]["status"] == "done"
    shown = cli_ok(capsys, "show", "1", "--db", searched, "--all").out
    assert "run 1: task digits-cnn" in shown and "conv1" in shown and "all-w8a8" in shown
    every = cli_ok(capsys, "frontier", "1", "--db", searched, "--all").out
    assert "all-w2a2" in every and "beaten" in every
    doc = json.loads(cli_ok(capsys, "frontier", "1", "--db", searched, "--json").out)
    shown = cli_ok(capsys, "frontier", "1", "--db", searched).out
    for p in doc["points"]:  # the default table is the measured frontier: no point another one beats
        assert (f"│ {p['point']:>5} │" in shown) == (p["measured_metric"] is not None and not p["dominated"]), p
    assert "hidden (--all shows them)" in shown


def test_devices_lists_every_target(capsys):
    devices = json.loads(cli_ok(capsys, "devices", "--json").out)
    assert {
        "h100-sxm",
        "a100",
        "rtx4090",
        "jetson-agx-orin",
        "zcu104",
        "pynq-z1",
        "stm32h743",
        "stm32f746",
        "cpu-x86",
    } <= {d["name"] for d in devices}


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["search", "--model", "digits"], 2, "expected 'example:NAME' or 'path/to/file.py:factory'"),
        (["search", "--model", "example:digit"], 2, "did you mean 'digits-cnn'"),
        (
            ["search", "--model", f"{ASSETS / 'tasks' / 'good_task.py'}:make_broken"],
            2,
            "make_broken() raised RuntimeError",
        ),
        (["search", "--target", "h100"], 2, "did you mean 'h100-sxm'"),
        (["search", "--candidates", "w4a8,w5a8"], 2, "unknown weight format '5'"),
        (
            ["search", "--target", "h100-sxm", "--candidates", "wint4_g128a16,w8a16"],
            2,
            "candidate 'wint4_g128a16' does not run on h100-sxm; choose among the candidates it runs",
        ),
        (["search", "--budget", "luts=10"], 2, "smallest achievable is"),
        (
            ["search", "--model", f"{ASSETS / 'tasks' / 'good_task.py'}:make_weightless_loss"],
            1,
            "does not depend on the model's weights",
        ),
        (
            ["search", "--model", f"{ASSETS / 'tasks' / 'good_task.py'}:make_nan_outputs", "--no-validate"],
            2,
            "the loss of calibration batch 0 is nan",
        ),
        (
            ["search", "--model", f"{ASSETS / 'tasks' / 'good_task.py'}:make_wrong_shape", "--no-validate"],
            2,
            "check that the calibration inputs",
        ),
        (["show", "42"], 2, "run 42 is not in"),
        (["search", "--max-drop", "-0.1"], 2, "The 'max_drop' parameter of search must be a number >= 0"),
        (["search", "--max-drop", "100%"], 2, "percentage of the float metric below 100%"),
        (["search", "--max-drop", "a lot"], 2, "The 'max_drop' parameter of search must be"),
        (["search", "--max-drop", "1%", "--no-validate"], 2, "max_drop need measured evaluations, and validate=False"),
        (
            ["search", "--refine", "3", "--model", f"{ASSETS / 'tasks' / 'good_task.py'}:make_task"],
            2,
            "has no evaluate function, and refine need measured evaluations",
        ),
        (
            ["search", "--max-drop", "1e-9", "--candidates", "w2a2"],
            2,
            "no configuration is within it: the most precise one the target runs measures",
        ),
    ],
)
def test_bad_input_is_one_line_without_traceback(capsys, searched, argv, code, message):
    gc.collect()  # closes the earlier tests' connections, which checkpoint the WAL into the file
    stored = Path(searched).read_bytes()
    status, out, err = run_cli(capsys, *argv, "--db", searched)
    gc.collect()
    assert Path(searched).read_bytes() == stored  # refused before anything is written
    assert status == code
    # Progress lines of stages that ran may come first; the error is the one last line.
    last = err.strip().splitlines()[-1]
    assert last.startswith("mpq: error: ") and message in last
    assert "Traceback" not in err and err.count("mpq: error") == 1


def test_malformed_budget_is_a_usage_error(capsys, searched):
    status, _, err = run_cli(capsys, "search", "--budget", "flash_bytes", "--db", searched)
    assert status == 2 and "is not NAME=VALUE" in err


def test_not_a_database(capsys, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello\n")
    status, _, err = run_cli(capsys, "runs", "--db", str(text))
    assert status == 1 and "file is not a database" in err and "Traceback" not in err
    assert text.read_text() == "hello\n"


def test_measure_then_search_with_the_measured_table(capsys, searched, tmp_path):
    csv = tmp_path / "measured.csv"
    rows = json.loads(
        cli_ok(
            capsys,
            "measure",
            "--target",
            "cpu-x86",
            "--candidates",
            "w8a8,w4a8",
            "--warmup",
            "1",
            "--repeats",
            "2",
            "--device",
            "cpu",
            "--out",
            str(csv),
            "--json",
        ).out
    )
    assert {(r["layer"], r["candidate"]) for r in rows} == {
        (l, c) for l in ("conv1", "conv2", "conv3", "conv4", "fc1", "fc2") for c in ("w8a8", "w4a8")
    }
    assert all(r["latency_min_s"] <= r["latency_s"] <= r["latency_max_s"] for r in rows)
    doc = json.loads(
        cli_ok(
            capsys,
            "search",
            "--target",
            "cpu-x86",
            "--candidates",
            "w8a8,w4a8",
            "--measured",
            str(csv),
            "--db",
            searched,
            "--json",
            *FAST,
        ).out
    )
    measured = {(r["layer"], r["candidate"]): r["latency_s"] for r in rows}
    for point in doc["points"]:  # every point's latency is the sum of the measured layer latencies
        expected = sum(measured[layer, candidate] for layer, candidate in point["assignment"].items())
        assert point["costs"]["latency_s"] == pytest.approx(expected)


def test_export_every_format(capsys, searched, tmp_path):
    doc = json.loads(cli_ok(capsys, "export", "1", "--point", "0", "--db", searched).out)
    assert (
        doc["run"] == 1
        and doc["point"] == 0
        and set(doc["layers"]) == {"conv1", "conv2", "conv3", "conv4", "fc1", "fc2"}
    )
    layer = doc["layers"]["conv1"]
    assert layer["candidate"] == f"w{layer['weight_format'][3]}a{layer['act_format'][3]}"  # e.g. w2a2 -> int2_pc, int2
    hawq = json.loads(cli_ok(capsys, "export", "1", "--point", "0", "--to", "hawq", "--db", searched).out)
    (config,) = hawq.values()
    assert config == {name: int(spec["weight_format"][3]) for name, spec in doc["layers"].items()}
    out = tmp_path / "hf.json"
    cli_ok(capsys, "export", "1", "--point", "0", "--to", "hf", "--out", str(out), "--db", searched)
    hf = json.loads(out.read_text())["quantization_config"]
    assert (
        hf["quant_method"] == "mpq"
        and hf["config_groups"]["fc2"]["weights"]["format"] == doc["layers"]["fc2"]["weight_format"]
    )
    status, _, err = run_cli(capsys, "export", "1", "--point", "999", "--db", searched)
    assert status == 2 and "run 1 has no point 999" in err


def test_compare_two_runs(capsys, searched):
    doc = json.loads(cli_ok(capsys, "compare", "1", "1", "--points", "0,1", "--db", searched, "--json").out)
    assert doc["points"] == [0, 1] and {f["run"] for f in doc["frontiers"]} == {1}
    changed = {row["layer"] for row in doc["layers"] if row["changed"]}
    first = json.loads(cli_ok(capsys, "export", "1", "--point", "0", "--db", searched).out)["layers"]
    second = json.loads(cli_ok(capsys, "export", "1", "--point", "1", "--db", searched).out)["layers"]
    assert changed == {l for l in first if first[l]["candidate"] != second[l]["candidate"]}
    status, _, err = run_cli(capsys, "compare", "1", "1", "--points", "0", "--db", searched)
    assert status == 2 and "is not K,L" in err


def test_search_with_an_allowed_drop_reports_the_cheapest_point_within_it(capsys, tmp_path):
    db = str(tmp_path / "drop.db")
    doc = json.loads(
        cli_ok(
            capsys,
            "search",
            "--model",
            f"{ASSETS / 'tasks' / 'tiny_task.py'}:make_task",
            "--target",
            "cpu-x86",
            "--objective",
            "weight_bytes",
            "--max-drop",
            "5%",
            "--max-evals",
            "8",
            "--max-samples",
            "4",
            "--db",
            db,
            "--json",
        ).out
    )
    assert doc["max_drop"] == "5%" and doc["evaluations"] <= 8
    best = next(p for p in doc["points"] if p["point"] == doc["best_within_drop"])
    assert best["measured_metric"] >= doc["float_metric"] * 0.95
    within = [
        p
        for p in doc["points"]
        if p["measured_metric"] is not None and p["measured_metric"] >= doc["float_metric"] * 0.95
    ]
    assert best["costs"]["weight_bytes"] == min(p["costs"]["weight_bytes"] for p in within)
    table = cli_ok(capsys, "frontier", "1", "--db", db).out
    assert f"cheapest within a drop of 5%: point {doc['best_within_drop']}" in table.replace("\n", " ")


def test_exporting_a_point_beaten_on_measurement_warns_naming_the_better_one(capsys, searched):
    import mpq

    run = mpq.open_run(searched, 1)
    beaten = run.frontier[run.frontier["dominated"].fillna(False).astype(bool)]
    assert len(beaten), "the digits run has points beaten on measurement"
    point = int(beaten["point"].iloc[0])
    with pytest.warns(
        mpq.exceptions.DominatedPointWarning, match=rf"point {point} is beaten on measurement by point \d+"
    ):
        run.export(point)
    out, err = cli_ok(capsys, "export", "1", "--point", str(point), "--db", searched)
    assert json.loads(out)["point"] == point
    assert err.count("\n") == 1 and err.startswith(f"mpq: warning: run 1 point {point} is beaten on measurement")
    fine = int(run.frontier.loc[run.frontier["dominated"] == False, "point"].iloc[0])  # noqa: E712
    assert cli_ok(capsys, "export", "1", "--point", str(fine), "--db", searched).err == ""


@pytest.mark.parametrize(("probe", "measured"), [("hybrid", {"w2a2"}), ("measured", {"w2a2", "w4a4", "w4a8", "w8a8"})])
def test_search_with_the_measured_and_hybrid_probes(capsys, tmp_path, probe, measured):
    import mpq

    db = str(tmp_path / f"{probe}.db")
    cli_ok(
        capsys,
        "search",
        "--model",
        f"{ASSETS / 'tasks' / 'tiny_task.py'}:make_task",
        "--probe",
        probe,
        "--max-samples",
        "4",
        "--max-points",
        "3",
        "--db",
        db,
    )
    sensitivity = mpq.open_run(db, 1).tables["sensitivity"]
    assert set(sensitivity.loc[sensitivity.probe == "measured", "candidate"]) == measured
    assert (probe == "hybrid") == ("hessian_w" in set(sensitivity.probe))
