"""The mpq command line: exit codes, one-line errors, the --json shapes, tables at 80 columns."""

import gc
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

import mpq
import mpq.cli
from mpq._cli_render import StageProgress
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
        "ort_latency_s",
        "assignment",
    }
    assert point["ort_latency_s"] is None  # until mpq measure --runtime onnxruntime --all-points
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
    shown = cli_ok(capsys, "show", "1", "--db", searched, "--all", "--wide").out
    assert "run 1: task digits-cnn" in shown and "conv1" in shown and "all-w8a8" in shown
    every = cli_ok(capsys, "frontier", "1", "--db", searched, "--all", "--wide").out
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
        (["search", "--model", "digits"], 2, "expected 'example:NAME', 'path/to/file.py[:factory]' or 'hf:PATH'"),
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
            2,
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
        # issue 26: each of these was a traceback, or named a parameter the user did not give
        (["show", "99999999999999999999999"], 2, "run 99999999999999999999999 is not in"),
        (["search", "--target", "x" * 15000], 2, "x... (15000 characters); choose one of a100, cpu-x86"),
        (["search", "--model", "x" * 15000 + ".py:make"], 2, "(15008 characters): file 'xxx"),
        (["search", "--max-samples", "0"], 2, "The 'max_samples' parameter of search must be an int in the range"),
        (["search", "--max-drop", "-0.1"], 2, "The 'max_drop' parameter of search must be a number >= 0"),
        (["search", "--max-drop", "100%"], 2, "percentage of the float metric below 100%"),
        (["search", "--max-drop", "a lot"], 2, "The 'max_drop' parameter of search must be"),
        (["search", "--max-drop", "1%", "--no-validate"], 2, "max_drop need measured evaluations, and validate=False"),
        (["search", "--strategy", "regoin"], 2, "unknown strategy 'regoin'"),
        (
            ["search", "--strategy", "region,drop"],
            2,
            "strategy 'drop' finds the cheapest configuration within max_drop",
        ),
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
    status, _, err = run_cli(capsys, "export", "1", "--point", "999", "--db", searched)
    assert status == 2 and "run 1 has no point 999" in err


def test_export_compressed_tensors_of_a_linear_model(capsys, tmp_path):
    db = str(tmp_path / "mlp.db")
    cli_ok(capsys, "search", "--model", f"{ASSETS.parent / 'app_tests' / 'digits_mlp.py'}:make_task", "--db", db, *FAST)
    out = tmp_path / "quantization_config.json"
    run = mpq.open_run(db, 1)
    point = int(run.frontier.loc[run.frontier["dominated"] == False, "point"].iloc[0])  # noqa: E712  not beaten: no warning
    said = cli_ok(
        capsys, "export", "1", "--point", str(point), "--to", "compressed-tensors", "--out", str(out), "--db", db
    )
    assert re.sub(r"\s", "", said.out) == f"wrote{out}" and said.err == ""  # the console wraps a long path
    config = json.loads(out.read_text())
    assert config == run.export(point, "compressed-tensors")  # what the Python API returns
    assert config["quant_method"] == "compressed-tensors"
    targets = {layer for group in config["config_groups"].values() for layer in group["targets"]}
    assert targets | set(config["ignore"]) == {"0", "2"}  # the MLP's two Linear layers, by module name


def test_export_that_cannot_be_written_is_one_line_and_writes_nothing(capsys, searched, tmp_path):
    out = tmp_path / "quantization_config.json"
    argv = ["export", "1", "--point", "0", "--db", searched, "--out"]
    status, _, err = run_cli(capsys, *argv, str(out), "--to", "compressed-tensors")  # digits-cnn: conv layers
    assert status == 2 and not out.exists()
    errors = [line for line in err.splitlines() if not line.startswith("mpq: warning: ")]  # point 0 may be beaten
    assert errors == [
        "mpq: error: run 1 point 0: compressed-tensors quantizes Linear and Embedding layers only, and this point "
        "quantizes conv1 (conv2d), conv2 (conv2d), conv3 (conv2d) and 1 more; export it as json instead."
    ]
    for missing, why in ((tmp_path / "no" / "p.json", "No such file or directory"), (tmp_path, "Is a directory")):
        status, _, err = run_cli(capsys, *argv, str(missing))
        assert status == 2 and [line for line in err.splitlines() if not line.startswith("mpq: warning: ")] == [
            f"mpq: error: cannot write {missing}: {why}; give --out a file in a folder that exists and is writable."
        ]
    assert not (tmp_path / "no").exists()


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
        mpq.exceptions.DominatedPointWarning,
        # each figure is said with its point's number: which point is which
        match=rf"point {point} is beaten on measurement by point (\d+) \(point \1: latency_s [^;]+, accuracy [\d.]+; "
        rf"point {point}: latency_s [^;]+, accuracy [\d.]+\); export point \1 instead\.$",
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


@pytest.fixture
def at_80(monkeypatch):
    """The command line on an 80-column terminal (COLUMNS=80)."""
    monkeypatch.setattr(mpq.cli, "stdout", Console(width=80))
    monkeypatch.setattr(mpq.cli, "stderr", Console(width=80, stderr=True))


def reads_whole(text: str) -> list[str]:
    """The lines of ``text``, checked to read whole at 80 columns: none longer, no cell cut."""
    lines = text.splitlines()
    assert all(len(line) <= 80 for line in lines), "\n".join(line for line in lines if len(line) > 80)
    assert "…" not in text, text
    return lines


def rows(lines: list[str]) -> list[list[str]]:
    """The cells of a rich table's body rows."""
    return [[cell.strip() for cell in line.strip("│").split("│")] for line in lines if line.startswith("│")]


def test_runs_show_frontier_and_devices_read_whole_at_80_columns(searched, capsys, at_80):
    doc = json.loads(cli_ok(capsys, "frontier", "1", "--db", searched, "--json").out)
    runs = reads_whole(cli_ok(capsys, "runs", "--db", searched).out)
    assert rows(runs)[0][:4] == ["1", "done", "digits-cnn", "zcu104"]
    shown = reads_whole(cli_ok(capsys, "show", "1", "--db", searched, "--all").out)
    assert ["conv2", "conv2d", "32x16x3x3"] in [row[:3] for row in rows(shown)]  # a weight shape on one line
    assert "created 20" in "\n".join(shown)  # the date is not broken from the word it follows
    for argv in (["frontier", "1"], ["frontier", "1", "--all"]):
        lines = reads_whole(cli_ok(capsys, *argv, "--db", searched).out)
        header = next(line for line in lines if line.startswith("┃"))
        assert re.search(r"left out at 80 columns; --wide shows all", "\n".join(lines))
        for row in rows(lines):  # every row's formats add up to the 6 layers, cut or whole
            formats = row[-1].split()
            counts = [int(word.rpartition(":")[2]) if ":" in word else int(word[1:]) for word in formats]
            assert sum(counts) == 6, row
            assert int(row[0]) in {p["point"] for p in doc["points"]}
        assert "latency_s" in header and "accuracy" in header and "luts" in header  # objective, metric, budget
    wide = cli_ok(capsys, "frontier", "1", "--db", searched, "--wide").out
    assert "predicted_loss" in wide and "left out" not in wide and "…" not in wide
    reads_whole(cli_ok(capsys, "devices").out)


@pytest.fixture(scope="module")
def mcu_search(searched):
    """``mpq search --target stm32h743`` at 80 columns (the probe is the digits run's): (stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(mpq.cli, "stdout", Console(file=out, width=80))
        patch.setattr(mpq.cli, "stderr", Console(file=err, width=80))
        try:
            main(["search", "--target", "stm32h743", "--db", searched, *FAST])
        except SystemExit as exc:
            assert exc.code in (0, None), err.getvalue()
    return out.getvalue(), err.getvalue()


def test_mcu_frontier_shows_flash_and_sram(searched, mcu_search, capsys):
    lines = reads_whole(mcu_search[0])
    header = next(line for line in lines if line.startswith("┃"))
    assert {"latency_s", "accuracy", "flash_bytes", "sram_bytes", "formats"} <= set(header.replace("┃", " ").split())
    run_id = re.search(r"run id (\d+)", mcu_search[0]).group(1)
    doc = json.loads(cli_ok(capsys, "frontier", run_id, "--db", searched, "--json").out)
    costs = {p["point"]: p["costs"] for p in doc["points"]}
    for row in rows(lines):
        assert f"{costs[int(row[0])]['flash_bytes']:.0f}" in row and f"{costs[int(row[0])]['sram_bytes']:.0f}" in row


def test_progress_in_a_file_is_plain_lines_of_every_stage(mcu_search):
    lines = mcu_search[1].splitlines()  # a file, not a terminal: lines as the stages go, no bar
    assert all(re.match(r"^mpq: \w+ \d+/\d+, \d+ s: ", line) for line in lines), lines
    stages = list(dict.fromkeys(line.split()[1] for line in lines))
    assert stages == ["layers", "costs", "probe", "omega", "solve", "validate", "store"]
    validate = [line for line in lines if line.startswith("mpq: validate ")]
    assert 1 < len(validate) <= 11  # one a tenth of the evaluations, and the last


def test_the_progress_frame_of_a_failed_stage_stays_where_it_stopped():
    def frame(fail: bool) -> list[str]:
        console = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
        try:
            with StageProgress(console) as progress:
                progress("layers", 0, 1, "running the model once")
                for sample in range(1, 28):
                    progress(
                        "probe", sample, 200, f"hessian: sample {sample}, worst relative stderr 5.0% (hessian_w conv1)"
                    )
                progress("validate", 0, 13, "frontier")
                progress("validate", 7, 13, "frontier")
                if fail:
                    raise RuntimeError
        except RuntimeError:
            pass
        drawn = console.file.getvalue().rsplit("\x1b[2K", 1)[-1]  # the last frame, the cursor shown again
        return reads_whole(drawn.replace("\x1b[?25h", ""))

    done = [line.split()[:3] for line in frame(fail=False) if line[:1].strip()]
    assert done == [
        ["layers", "━━━━━━━━━━", "1/1"],
        ["probe", "━━━━━━━━━━", "27/27"],
        ["validate", "━━━━━━━━━━", "7/7"],
    ]
    failed = frame(fail=True)
    assert "7/13" in next(line for line in failed if line.startswith("validate"))
    assert "27/27" in next(line for line in failed if line.startswith("probe"))


def test_compare_prints_only_what_differs(searched, mcu_search, capsys, at_80):
    same = reads_whole(cli_ok(capsys, "compare", "1", "1", "--db", searched).out)
    assert len(same) == 2 and same[0] == "run 1 against itself: one frontier ('mpq frontier 1' shows it)."
    assert re.fullmatch(r"run 1 point (\d+) and run 1 point \1 give every layer the same candidate\.", same[1])
    first = json.loads(cli_ok(capsys, "export", "1", "--point", "0", "--db", searched).out)["layers"]
    second = json.loads(cli_ok(capsys, "export", "1", "--point", "1", "--db", searched).out)["layers"]
    changed = {l for l in first if first[l]["candidate"] != second[l]["candidate"]}
    lines = reads_whole(cli_ok(capsys, "compare", "1", "1", "--points", "0,1", "--db", searched).out)
    assert f"{len(changed)} of 6 layers differ between run 1 point 0 and run 1 point 1:" in lines
    assert {row[0] for row in rows(lines)} == changed
    assert [row[1:] for row in rows(lines)] == [
        [first[l]["candidate"], second[l]["candidate"]] for l in first if l in changed
    ]
    # another target: the settings that differ, and both frontiers
    other = re.search(r"run id (\d+)", mcu_search[0]).group(1)
    lines = reads_whole(cli_ok(capsys, "compare", "1", other, "--db", searched).out)
    assert ["target", "zcu104", "stm32h743"] in rows(lines)
    assert {"task", "model", "objectives"}.isdisjoint(row[0] for row in rows(lines))
    titles = {line.strip() for line in lines}
    assert "run 1: digits-cnn on zcu104" in titles and f"run {other}: digits-cnn on stm32h743" in titles
    doc = json.loads(cli_ok(capsys, "compare", "1", other, "--db", searched, "--json").out)
    # The quantizer's input grid is each target's own (zcu104: unsigned, FINN; the MCU: zero points).
    assert sorted(row["setting"] for row in doc["settings"]) == ["candidates", "probe.quantizer", "target"]
    assert {f["run"] for f in doc["frontiers"]} == {1, int(other)} and len(doc["layers"]) == 6


def test_help_is_light_and_its_flags_take_no_type(capsys):
    heavy = "torch", "scipy", "pandas", "sqlalchemy", "solvers", "hwmodels"
    code = f"import sys, mpq.cli; print(sorted(set({heavy!r}) & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    help_text = cli_ok(capsys, "--help").out
    assert "--debug" in help_text and "<bool>" not in help_text
    help_text = cli_ok(capsys, "search", "--help").out
    assert "--json" in help_text and "<bool>" not in help_text
    assert "[default: all the target runs]" in " ".join(help_text.replace("│", " ").split())


@pytest.mark.parametrize("chain", ["greedy", "drop,refine"])
def test_search_strategy_is_spent_within_max_evals_and_stored_with_the_run(capsys, tmp_path, chain):
    tiny = f"{ASSETS / 'tasks' / 'tiny_task.py'}:make_task"
    db = str(tmp_path / "mpq.db")
    argv = ["search", "--model", tiny, "--max-drop", "0.05", "--max-evals", "8", "--strategy", chain, "--db", db]
    cli_ok(capsys, *argv, "--max-samples", "4", "--json")
    run = mpq.open_run(db, 1)
    assert run.record["settings"]["strategy"] == chain.split(",") and run.record["settings"]["version"] == 2
    assert 2 < run.record["evaluations"] <= 8  # the float model, the most precise configuration, the strategy's
    best = run.best(max_drop=0.05)
    assert best["measured_metric"] >= run.record["float_metric"] - 0.05
