"""Trust boundaries and operator faults (issue 26): a store is data, the task file it names is
code; every failure is one line with the right exit code; nothing half-written."""

import contextlib
import gc
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest

from mpq.cli import main
from mpq.exceptions import StoreError

FAST = ["--tolerance", "0.2", "--max-samples", "8"]
TINY = f"{Path(__file__).parents[1] / 'assets' / 'tasks' / 'tiny_task.py'}:make_task"

#: A task file that leaves a marker beside itself when imported: the proof that it ran.
MARKER_TASK = """\
from pathlib import Path

Path(__file__).with_name("MARKER").write_text("imported")


def make_task():
    raise SystemExit(7)
"""


def run_cli(capsys, *argv):
    """``mpq *argv`` in this process: its exit code (0 for a command that returns), stdout, stderr."""
    code = 0
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code or 0
    return (code, *capsys.readouterr())


@pytest.fixture(scope="module")
def searched(tmp_path_factory):
    """A store with one digits-cnn search (run 1)."""
    db = str(tmp_path_factory.mktemp("faults") / "mpq.db")
    try:
        main(["search", "--db", db, "--json", *FAST, "--max-points", "3"])
    except SystemExit as exc:
        assert exc.code in (0, None)
    return db


def store_naming(searched: str, folder: Path, spec: str) -> str:
    """A copy of ``searched`` whose run 1 names ``spec`` as its model (as a store handed over may)."""
    gc.collect()
    copy = folder / "handed-over.db"
    with closing(sqlite3.connect(searched)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)
    with closing(sqlite3.connect(copy)) as target, target:
        target.execute("UPDATE runs SET model_spec = ? WHERE id = 1", (spec,))
    return str(copy)


@pytest.fixture
def marker_store(searched, tmp_path):
    """``(db, spec, marker)``: a store whose run 1 names a marker-writing task file."""
    task = tmp_path / "evil.py"
    task.write_text(MARKER_TASK)
    spec = f"{task}:make_task"
    return store_naming(searched, tmp_path, spec), spec, tmp_path / "MARKER"


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "1", "--point", "0", "--to", "onnx", "--out", "{tmp}/m.onnx"],
        ["export", "1", "--point", "0", "--to", "qonnx", "--out", "{tmp}/m.onnx"],
        ["measure", "--runtime", "onnxruntime", "--run", "1", "--point", "0"],
        ["search", "--resume", "1"],
    ],
)
def test_readers_never_import_the_task_file_a_store_names(capsys, marker_store, tmp_path, argv):
    db, spec, marker = marker_store
    status, out, err = run_cli(capsys, *(a.format(tmp=tmp_path) for a in argv), "--db", db)
    assert not marker.exists()
    assert status == 2 and out == ""
    assert err == (
        f"mpq: error: run 1: its model is rebuilt by {spec!r}, a file the store names, and importing it runs that "
        f"file's code; give it yourself once you have checked it (--model {spec}, or model= in Python), or "
        "--trust-stored-model for a store you trust.\n"
    )


def without_warnings(err: str) -> list[str]:
    """stderr's lines but mpq's warnings (exporting point 0, which a search may have beaten, warns)."""
    return [line for line in err.splitlines() if not line.startswith("mpq: warning: ")]


@pytest.mark.parametrize("allow", [["--model", "{spec}"], ["--trust-stored-model"]])
def test_a_stored_task_file_runs_when_the_user_names_or_trusts_it(capsys, marker_store, tmp_path, allow):
    db, spec, marker = marker_store
    argv = ["export", "1", "--point", "0", "--to", "onnx", "--out", str(tmp_path / "m.onnx"), "--db", db]
    status, _, err = run_cli(capsys, *argv, *(a.format(spec=spec) for a in allow))
    assert marker.exists()  # imported on the user's word; its factory's sys.exit(7) is one line
    errors = without_warnings(err)
    assert status == 2 and len(errors) == 1 and "make_task() exited (SystemExit 7)" in errors[0]


def test_an_export_never_replaces_a_file_unless_forced(capsys, searched, tmp_path):
    out = tmp_path / "point.json"
    out.write_text("mine\n")
    argv = ["export", "1", "--point", "0", "--db", searched, "--out", str(out)]
    status, _, err = run_cli(capsys, *argv)
    assert status == 2 and out.read_text() == "mine\n"
    assert without_warnings(err) == [
        f"mpq: error: --out {str(out)!r} exists; give --force to replace it, or another --out (nothing was written)."
    ]
    main([*argv, "--force"])
    assert capsys.readouterr().out == f"wrote {out}\n" and '"point": 0' in out.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["point.json"]  # no temporary file left


@pytest.mark.parametrize("to", ["json", "hawq"])
def test_a_write_that_fails_leaves_the_old_file_whole(searched, tmp_path, to):
    """A file size limit (as a full disk) stops the write: the file replaced stays as it was."""
    out = tmp_path / "point.json"
    out.write_text('{"kept": true}\n')
    script = (
        "import resource, sys; from mpq.cli import main; "
        "resource.setrlimit(resource.RLIMIT_FSIZE, (64, resource.RLIM_INFINITY)); main(sys.argv[1:])"
    )
    argv = ["export", "1", "--point", "0", "--to", to, "--db", searched, "--out", str(out), "--force"]
    done = subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and done.stdout == ""
    assert without_warnings(done.stderr) == [
        f"mpq: error: cannot write {out}: File too large; give --out a file in a folder that exists and is writable."
    ]
    assert out.read_text() == '{"kept": true}\n' and [p.name for p in tmp_path.iterdir()] == ["point.json"]


def test_ctrl_c_names_the_run_and_how_to_resume_it(capsys, tmp_path, monkeypatch):
    from mpq._search import pipeline as _search

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(_search, "run_probe", interrupted)
    db = str(tmp_path / "mpq.db")
    status, out, err = run_cli(capsys, "search", "--db", db, *FAST)
    assert status == 130 and out == ""
    assert err.splitlines()[-1] == (
        "mpq: error: search interrupted; run 1 keeps what was done: finish it with 'mpq search --resume 1' "
        "(same --model and --db)."
    )


def test_sigterm_stops_a_search_resumable_and_says_so(tmp_path):
    import mpq

    db = tmp_path / "mpq.db"
    search = subprocess.Popen(
        [sys.executable, "-m", "mpq.cli", "search", "--db", str(db), "--max-samples", "200", "--tolerance", "1e-6"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):  # the run is stored before the probe starts
            with contextlib.suppress(StoreError):  # the schema may be half made: not yet a store
                if db.exists() and not mpq.list_runs(db).empty:
                    break
            assert search.poll() is None, search.communicate()
            time.sleep(0.1)
        search.terminate()
        out, err = search.communicate(timeout=120)
    finally:
        search.kill()
    assert search.returncode == 143 and out == ""
    assert err.splitlines()[-1] == (
        "mpq: error: search interrupted; run 1 keeps what was done: finish it with 'mpq search --resume 1' "
        "(same --model and --db)."
    )
    run = mpq.open_run(db, 1)
    assert run.status == "failed" and run.record["error"] == "interrupted (SIGTERM)"


def test_a_url_that_asks_for_read_only_is_never_written(capsys, searched, tmp_path):
    db = store_naming(searched, tmp_path, "example:digits-cnn")
    before = Path(db).read_bytes()
    for query in ("mode=ro", "immutable=1"):
        status, _, err = run_cli(capsys, "search", "--db", f"sqlite:///{db}?{query}", *FAST, "--target", "h100-sxm")
        assert status == 1 and "the store is read-only" in err.splitlines()[-1]
        main(["runs", "--db", f"sqlite:///{db}?{query}"])
        assert "done" in capsys.readouterr().out
    gc.collect()
    assert Path(db).read_bytes() == before


def test_a_store_in_a_folder_nobody_may_write_is_read_without_a_write(capsys, searched, tmp_path, monkeypatch):
    """A WAL store needs its -shm file, which SQLite cannot create in a read-only folder (simulated:
    root, who runs CI, may write anywhere): it is read as it is, and nothing appears beside it."""
    import os

    db = store_naming(searched, tmp_path, "example:digits-cnn")
    access = os.access
    monkeypatch.setattr(
        os, "access", lambda path, mode: access(path, mode) and not (mode & os.W_OK and Path(path) == tmp_path)
    )
    main(["runs", "--db", db])
    assert "done" in capsys.readouterr().out
    gc.collect()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["handed-over.db"]


def test_a_store_in_a_missing_folder_is_refused_not_created(capsys, tmp_path):
    db = tmp_path / "typo" / "deeper" / "mpq.db"
    status, _, err = run_cli(capsys, "search", "--db", str(db), *FAST)
    assert status == 2 and not (tmp_path / "typo").exists()
    assert err.splitlines()[-1] == (
        f"mpq: error: --db {str(db)!r}: its folder {str(db.parent)!r} does not exist; create it first, or give a "
        "file in a folder that exists."
    )


def test_a_forking_process_pool_is_refused_in_one_line(tmp_path):
    """Forked after torch started its threads, the workers hung the search (20 minutes, idle)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import mpq
    from mpq.exceptions import InvalidParameterError

    with (
        ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork")) as pool,
        pytest.raises(InvalidParameterError, match=r"^executor: this ProcessPoolExecutor forks its workers"),
    ):
        mpq.search(mpq.load_task(TINY), db=tmp_path / "mpq.db", executor=pool, max_points=3)
    assert not (tmp_path / "mpq.db").exists()


@pytest.mark.parametrize(
    ("scheme", "message"),
    [
        ("tls", "a tls:// scheduler needs this machine's TLS settings, and none are set; put them in Dask's"),
        ("tcp", "no Dask scheduler answered within 10 s (it accepted the connection and never answered)"),
    ],
)
def test_a_dask_scheduler_that_never_answers_or_needs_tls_is_one_line(capsys, tmp_path, scheme, message):
    """A listener that accepts and never answers (it hung the search for ever); tls:// without
    TLS settings (a TypeError traceback, then distributed's own ~20 s later)."""
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(5)  # the kernel accepts connections: nobody answers them
        address = f"{scheme}://127.0.0.1:{listener.getsockname()[1]}"
        started = time.monotonic()
        status, out, err = run_cli(capsys, "search", "--dask", address, "--db", str(tmp_path / "mpq.db"))
    assert time.monotonic() - started < 30
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith(f"mpq: error: --dask {address!r}: {message}")
    gc.collect()
    assert capsys.readouterr().err == ""  # nothing from a half-made client


@pytest.mark.parametrize(
    ("db", "message"),
    [
        ("foo://bar", "--db 'foo://bar' is not a database URL mpq can open; give a file path or a SQLAlchemy URL"),
        ("/tmp/" + "x" * 15000, "(15005 characters): File name too long; give the path of a store file"),
    ],
)
def test_a_db_nothing_can_open_is_one_line(capsys, db, message):
    status, out, err = run_cli(capsys, "runs", "--db", db)
    assert status == 2 and out == "" and err.count("\n") == 1 and message in err


def test_a_run_that_fails_names_itself_and_how_to_finish_it(capsys, tmp_path, monkeypatch):
    """A full disk mid-run whose failure could still be recorded (space freed, another write
    smaller) said only 'the disk is full', not the run left behind."""
    from mpq._storage import Store
    from mpq.exceptions import StoreError

    def disk_full(store, run_id, points):
        raise StoreError(f"{store.where}: database or disk is full; the disk is full: free space or give another --db.")

    monkeypatch.setattr(Store, "save_points", disk_full)
    status, out, err = run_cli(capsys, "search", "--model", TINY, "--db", str(tmp_path / "mpq.db"), *FAST)
    assert status == 1 and out == ""
    assert err.splitlines()[-1].endswith(
        "the disk is full: free space or give another --db. Run 1 keeps what was stored before this error: once its "
        "cause is fixed, finish it with 'mpq search --resume 1' (same --model and --db)."
    )


#: A task whose evaluate hangs on quantized models (the float model's evaluation returns at once).
HANGING_TASK = f"""\
import sys, time
sys.path.insert(0, {str(Path(__file__).parents[1] / "assets" / "tasks")!r})
import tiny_task


def make_task():
    task = tiny_task.make_task()
    evaluate, float_model = task.evaluate, task.model

    def hanging(model):
        if model is not float_model:
            time.sleep(3600)
        return evaluate(model)

    task.evaluate = hanging
    return task
"""


@pytest.mark.parametrize("action", ["stop", "skip"])
def test_an_evaluation_that_hangs_is_ended_at_the_timeout(capsys, tmp_path, action):
    (tmp_path / "hanging.py").write_text(HANGING_TASK)
    db = tmp_path / "mpq.db"
    argv = ["search", "--model", f"{tmp_path / 'hanging.py'}:make_task", "--db", str(db), *FAST, "--max-points", "2"]
    started = time.monotonic()
    status, out, err = run_cli(capsys, *argv, "--eval-timeout", "0.5", "--on-eval-timeout", action)
    assert time.monotonic() - started < 120
    import mpq

    run = mpq.open_run(db, 1)
    if action == "stop":
        assert status == 1 and out == "" and run.status == "failed"
        assert err.splitlines()[-1] == (
            "mpq: error: task 'tiny': an evaluation ran past --eval-timeout 0.5 s and was abandoned; make evaluate "
            "faster or raise --eval-timeout (--on-eval-timeout skip records such a configuration as not measured and "
            "goes on). Run 1 keeps what was stored before this error: once its cause is fixed, finish it with "
            "'mpq search --resume 1' (same --model and --db)."
        )
        assert run.record["error"].startswith("EvaluationTimeoutError: task 'tiny': an evaluation ran past")
    else:
        assert status == 0 and run.status == "done" and run.frontier["measured_metric"].isna().all()
        assert "mpq: warning: task 'tiny': an evaluation ran past --eval-timeout 0.5 s and was abandoned" in err


def test_stored_text_prints_as_written(capsys, searched, tmp_path):
    """A task name with a right-to-left override and rich markup (a terminal hyperlink) printed
    raw in mpq runs."""
    db = store_naming(searched, tmp_path, "example:digits-cnn")
    with closing(sqlite3.connect(db)) as target, target:
        target.execute(
            "UPDATE runs SET task_name = ? WHERE id = 1", ("cnn\u202eevil [link=http://example.com]x[/link]",)
        )
    for argv in (["runs", "--db", db, "--wide"], ["show", "1", "--db", db]):
        main(argv)
        out = capsys.readouterr().out
        assert "\u202e" not in out and "[link=http://example.com]x[/link]" in " ".join(out.split())
