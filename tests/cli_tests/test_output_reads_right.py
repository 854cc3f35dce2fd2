"""Issue 30: output that reads right: a task file given relative and rebuilt from another folder,
--max-points, the rank note, progress in a log file, one frontier line per configuration, and
the CLI's help and flags."""

import json
import shutil
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

import mpq
from mpq.cli import main

TASKS = Path(__file__).parents[1] / "assets" / "tasks"
FAST = ["--tolerance", "0.3", "--max-samples", "4"]


def run_cli(capsys, *argv):
    """``mpq *argv`` in this process: its exit code (0 for a command that returns), stdout, stderr."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code or 0
    return (code, *capsys.readouterr())


def errors(err: str) -> list[str]:
    """stderr's lines but mpq's warnings (a point a search beat warns on export)."""
    return [line for line in err.splitlines() if not line.startswith("mpq: warning: ")]


@pytest.fixture
def relative_run(capsys, tmp_path, monkeypatch):
    """``(db, task file)``: a search of ``wine.py`` given relative (no ``:make_task``), from its folder."""
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy(TASKS / "tiny_task.py", project / "wine.py")
    db = str(tmp_path / "mpq.db")
    monkeypatch.chdir(project)
    status, out, err = run_cli(capsys, "search", "--model", "wine.py", "--db", db, *FAST, "--max-points", "2", "--json")
    assert status == 0, err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    return db, project / "wine.py"


def test_a_relative_model_path_is_stored_resolved_and_rebuilt_from_another_folder(capsys, relative_run):
    db, task_file = relative_run
    status, out, err = run_cli(
        capsys, "export", "1", "--point", "0", "--to", "onnx", "--out", "m.onnx", "--trust-stored-model", "--db", db
    )
    assert status == 0 and errors(err) == [] and Path("m.onnx").is_file()
    status, out, err = run_cli(capsys, "search", "--resume", "1", "--trust-stored-model", "--db", db, "--json")
    assert status == 0 and errors(err) == [] and json.loads(out)["run"] == 1


def test_a_moved_task_file_is_one_line_naming_where_and_the_flag_then_given_again(capsys, relative_run, tmp_path):
    db, task_file = relative_run
    moved = tmp_path / "moved"
    moved.mkdir()
    task_file.rename(moved / "wine.py")
    export = ["export", "1", "--point", "0", "--to", "onnx", "--out", "m.onnx", "--db", db]
    status, out, err = run_cli(capsys, *export, "--trust-stored-model")
    assert status == 2 and out == ""
    assert errors(err) == [
        f"mpq: error: run 1: its task file {str(task_file)!r} (where the search ran) does not exist; give the task "
        "again with --model path/to/file.py:factory (model= in Python): it must build the run's model and data."
    ]
    status, out, err = run_cli(capsys, *export, "--model", "../moved/wine.py")
    assert status == 0 and errors(err) == [] and Path("m.onnx").is_file()
    status, out, err = run_cli(capsys, "search", "--resume", "1", "--model", "../moved/wine.py", "--db", db, "--json")
    assert status == 0 and errors(err) == []


def test_a_spec_an_older_mpq_stored_relative_says_where_it_was_looked_for(capsys, relative_run):
    db, _ = relative_run
    with closing(sqlite3.connect(db)) as store, store:
        store.execute("UPDATE runs SET model_spec = 'wine.py:make_task' WHERE id = 1")
    status, out, err = run_cli(capsys, "search", "--resume", "1", "--trust-stored-model", "--db", db)
    assert status == 2 and out == ""
    assert errors(err) == [
        "mpq: error: run 1: its task file 'wine.py' (relative to the folder the search ran in, which the store does "
        f"not record; looked for in {str(Path.cwd())!r}) does not exist; give the task again with --model "
        "path/to/file.py:factory (model= in Python): it must build the run's model and data."
    ]


def test_a_task_that_builds_another_model_is_refused_in_one_line(capsys, relative_run, tmp_path):
    db, _ = relative_run
    other = tmp_path / "other.py"
    other.write_text((TASKS / "tiny_task.py").read_text().replace("manual_seed(0)", "manual_seed(1)"))
    export = ["export", "1", "--point", "0", "--to", "onnx", "--out", "m.onnx", "--db", db]
    status, out, err = run_cli(capsys, *export, "--model", str(other))
    assert status == 2 and len(errors(err)) == 1 and "now builds other model weights than the run searched" in err
    status, out, err = run_cli(capsys, "search", "--resume", "1", "--model", str(other), "--db", db)
    assert status == 2 and len(errors(err)) == 1 and "run 1 searched task 'tiny' with another " in err


@pytest.fixture(scope="module")
def four_points(tmp_path_factory):
    """The frontier JSON of a digits-cnn search with --max-points 4."""
    db = str(tmp_path_factory.mktemp("four") / "mpq.db")
    try:
        main(["search", "--db", db, *FAST, "--max-points", "4", "--json"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return db


def test_max_points_bounds_the_frontier_configurations_validated(capsys, four_points):
    doc = json.loads(run_cli(capsys, "frontier", "1", "--db", four_points, "--json", "--all")[1])
    measured = [p for p in doc["points"] if p["measured_metric"] is not None]
    frontier = {json.dumps(p["assignment"], sort_keys=True) for p in measured if not p["is_baseline"]}
    baselines = {json.dumps(p["assignment"], sort_keys=True) for p in measured if p["is_baseline"]}
    assert 2 <= len(frontier) <= 4 and len(baselines) >= 3  # the baselines are measured besides
    assert doc["evaluations"] == 1 + len(frontier | baselines)


def test_a_frontier_point_that_is_a_baseline_is_listed_once_saying_so(capsys, four_points):
    doc = json.loads(run_cli(capsys, "frontier", "1", "--db", four_points, "--json", "--all")[1])
    configurations = [json.dumps(p["assignment"], sort_keys=True) for p in doc["points"]]
    assert len(configurations) == len(set(configurations))
    twins = [p for p in doc["points"] if ", also all-" in p["label"]]
    assert twins and all(not p["is_baseline"] and p["label"].startswith("frontier, also all-") for p in twins)


def test_a_log_file_fills_with_progress_lines_while_the_search_runs(tmp_path):
    log = tmp_path / "search.log"
    argv = [sys.executable, "-m", "mpq.cli", "search", "--db", str(tmp_path / "mpq.db"), *FAST]
    with log.open("w") as stderr:
        search = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            while search.poll() is None and "mpq: validate " not in log.read_text():
                time.sleep(0.2)
            assert search.poll() is None, "the search ended before its log showed a validation line"
        finally:
            search.wait(timeout=600)
    lines = log.read_text().splitlines()
    assert search.returncode == 0, lines
    assert "\r" not in log.read_text() and all(line.startswith("mpq: ") for line in lines)


def help_text(capsys, *command, columns: int = 200) -> str:
    """A command's help as one line of words, printed ``columns`` wide (200: no cell cut)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COLUMNS", str(columns))
        status, out, err = run_cli(capsys, *command, "--help")
    assert status == 0 and err == ""
    return " ".join(out.replace("│", " ").split())


@pytest.mark.parametrize("command", [["search"], ["probe"], ["measure"]])
def test_the_model_help_lists_every_built_in_example(capsys, command):
    import mpq

    text = help_text(capsys, *command)
    assert all(f"example:{name}" in text for name in mpq.list_examples()["name"])
    assert "example:minilm-small" in text and "path/to/file.py[:factory] (factory default: make_task)" in text


@pytest.mark.parametrize("command", [["search"], ["probe"], ["measure"]])
def test_a_terminal_80_columns_wide_shows_every_example_name_whole(capsys, command):
    """A pair of flag names (``--bias-correction --no-bias-correction``) once widened the name
    column until the help column cut ``example:digits-cnn`` to ``example:digits-c…``."""
    text = help_text(capsys, *command, columns=80)
    assert "…" not in text and "example:digits-cnn" in text


@pytest.mark.parametrize(
    "command",
    [[], ["search"], ["runs"], ["show"], ["frontier"], ["export"], ["compare"], ["devices"], ["probe"], ["measure"]]
    + [["dashboard"], ["db", "upgrade"]],
)
def test_no_help_shows_a_python_type_beside_the_named_values(capsys, command):
    text = help_text(capsys, *command)
    assert not any(f"<{kind}" in text for kind in ("str", "int", "float", "list", "bool")), text


def test_measure_says_its_default_target_once_and_detects_an_avx2_core(capsys, tmp_path):
    from mpq._defaults import this_cpu_target

    text = help_text(capsys, "measure")
    assert text.count("[default: this machine's CPU: cpu-x86-avx2 on a core with AVX2 but no VNNI or AMX") == 1
    target = text[text.index("--target") : text.index("--candidates")]
    assert target.count("default") == 1 and "cpu-x86]" in target  # Typer's own [default: ...] not beside it
    cpuinfo = tmp_path / "cpuinfo"
    for flags, target in [
        ("fpu sse2 avx avx2 fma f16c", "cpu-x86-avx2"),
        ("fpu sse2 avx avx2 avx512f avx512_vnni amx_int8", "cpu-x86"),
        ("fpu sse2 avx2 avx_vnni", "cpu-x86"),
        ("fpu sse2", "cpu-x86"),
    ]:
        cpuinfo.write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
        assert this_cpu_target(str(cpuinfo)) == target, flags
    assert this_cpu_target(str(tmp_path / "none")) == "cpu-x86"


def test_version(capsys):
    import mpq

    assert run_cli(capsys, "--version") == (0, f"mpq {mpq.__version__}\n", "")


def test_show_json_is_the_frontier_shape_with_the_settings_and_layers(capsys, relative_run):
    db, _ = relative_run
    status, out, err = run_cli(capsys, "show", "1", "--db", db, "--json")
    doc, frontier = json.loads(out), json.loads(run_cli(capsys, "frontier", "1", "--db", db, "--json")[1])
    assert status == 0 and err == "" and {k: doc[k] for k in frontier} == frontier
    assert doc["budgets"] == {} and len(doc["model_hash"]) == 64 and doc["created_at"]
    assert [layer["layer"] for layer in doc["layers"]] == ["0", "3", "5"]


def test_progress_lines_come_each_tenth_or_each_30_s_it_moved_on(monkeypatch):
    import io
    import types

    from rich.console import Console

    import mpq._cli_render
    from mpq._cli_render import StageProgress

    now = [0.0]
    monkeypatch.setattr(mpq._cli_render, "time", types.SimpleNamespace(monotonic=lambda: now[0]))
    console = Console(file=io.StringIO(), width=80)  # a file: no terminal
    with StageProgress(console) as progress:
        for sample in range(1, 28):  # a probe of at most 200 samples, one each 5 s, converged at 27
            now[0] += 5
            progress("probe", sample, 200, f"sample {sample}")
        written = console.file.getvalue()  # there before the stage ends
        for done in range(0, 21):
            progress("validate", done, 20, "frontier")
    assert written.splitlines() == [
        "mpq: probe 1/200, 5 s: sample 1",
        "mpq: probe 7/200, 35 s: sample 7",
        "mpq: probe 13/200, 65 s: sample 13",
        "mpq: probe 19/200, 95 s: sample 19",
        "mpq: probe 25/200, 125 s: sample 25",
    ]
    validate = console.file.getvalue().splitlines()[5:]
    assert [line.split()[2] for line in validate] == [f"{n}/20," for n in range(0, 21, 2)]


def test_the_baseline_a_frontier_point_lists_still_exports_by_its_own_number(capsys, four_points):
    doc = json.loads(run_cli(capsys, "frontier", "1", "--db", four_points, "--json", "--all")[1])
    twin = next(p for p in doc["points"] if ", also all-" in p["label"])
    listed = {p["point"] for p in doc["points"]}
    run = mpq.open_run(four_points, 1)
    baseline = next(
        int(p)
        for p in run.assignments["point"].unique()
        if p not in listed and run.assignment(int(p)) == twin["assignment"]
    )
    status, out, err = run_cli(capsys, "export", "1", "--point", str(baseline), "--db", four_points)
    assert status == 0, err
    exported = json.loads(out)
    assert exported["point"] == baseline and exported["measured_metric"] == twin["measured_metric"]
