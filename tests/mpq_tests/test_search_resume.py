"""A search interrupted at any stage resumes from what it stored; a changed model is refused."""

import dataclasses
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import mpq
import solvers
from mpq import _storage
from mpq._search import pipeline as _search
from mpq.exceptions import InvalidParameterError, SearchInterrupted

FAST = mpq.ProbeSettings(tolerance=0.2, min_samples=4, max_samples=8)
TINY = f"{Path(__file__).parents[1] / 'assets' / 'tasks' / 'tiny_task.py'}:make_task"


def interrupt_at(stage: str, after: int):
    def progress(current, done, total, message):
        if current == stage and done >= after:
            raise KeyboardInterrupt

    return progress


def test_interrupted_validation_resumes_without_redoing_anything(tmp_path, monkeypatch):
    task = mpq.load_task("example:digits-cnn")
    evaluations = []
    evaluate = task.evaluate
    task.evaluate = lambda model: evaluations.append(1) or evaluate(model)  # one metric for both runs
    db = tmp_path / "mpq.db"
    with pytest.raises(SearchInterrupted, match=r"run 1 keeps what was done: finish it with 'mpq search --resume 1'"):
        mpq.search(task, settings=FAST, db=db, progress=interrupt_at("validate", 3))
    interrupted = mpq.open_run(db, 1)
    assert interrupted.status == "failed" and interrupted.record["error"] == "interrupted (Ctrl-C)"
    validated = interrupted.frontier.measured_metric.notna()
    # three configurations measured (a proxy optimum that is also a baseline fills two rows)
    assert interrupted.record["evaluations"] == 1 + 3 and 3 <= validated.sum() < len(interrupted.frontier)

    # Nothing stored is computed again: no probe, no omega, no solve; only the missing validations.
    for name in ("run_probe", "omega"):
        monkeypatch.setattr(_search, name, lambda *a, **k: pytest.fail("recomputed a stored stage"))
    monkeypatch.setattr(solvers, "frontier", lambda *a, **k: pytest.fail("solved again"))
    evaluations.clear()
    resumed = mpq.search(task, db=db, resume=1)
    assert resumed.id == 1 and resumed.status == "done" and resumed.record["error"] is None
    # only what was not measured yet: every evaluation is counted once (the float32 metric is stored)
    assert len(evaluations) == resumed.record["evaluations"] - interrupted.record["evaluations"] > 0
    assert resumed.frontier.measured_metric.notna().all()

    def measured(run):
        return {
            tuple(sorted(run.assignment(int(p)).items())): m
            for p, m in zip(run.frontier.point, run.frontier.measured_metric)
            if m == m
        }

    before, after = measured(interrupted), measured(resumed)
    assert len(before) == 3 and {key: after[key] for key in before} == before  # kept as measured
    assert mpq.search(task, db=db, resume=1).frontier.equals(resumed.frontier)  # done: returned as is


def test_an_interrupted_in_memory_search_says_how_it_can_be_finished_and_is(tmp_path):
    """'mpq search --resume' would open a new, empty in-memory store: the message names the one
    thing that finishes the run, the same store object, and that object does."""
    task = mpq.load_task(TINY)
    store = _storage.MemoryStore()
    with pytest.raises(
        SearchInterrupted, match=r"keeps it only in this process: mpq.search\(\.\.\., db=store, resume=1\)"
    ) as raised:
        mpq.search(task, settings=FAST, db=store, progress=interrupt_at("validate", 1))
    assert "--resume" not in str(raised.value)
    resumed = mpq.search(task, db=store, resume=1)
    assert resumed.id == 1 and resumed.status == "done"


def test_a_proxy_optimum_that_is_also_a_baseline_survives_an_interruption_as_its_own_point(tmp_path, monkeypatch):
    """Its one evaluation is stored on the baseline and as a new "frontier" point: a run stopped
    there must resume to the uninterrupted frontier (once these were two writes, and a kill
    between them lost the point for good: the configuration counted as measured)."""
    task = mpq.load_task("example:digits-cnn")
    db = tmp_path / "mpq.db"  # one store: the second run reuses the first one's probe
    uninterrupted = mpq.search(task, settings=FAST, db=db)
    add_points = _storage.Store.add_points

    def killed_on_the_shared_write(store, run_id, points, measured=None):
        if measured:
            raise KeyboardInterrupt
        add_points(store, run_id, points, measured)

    monkeypatch.setattr(_storage.Store, "add_points", killed_on_the_shared_write)
    with pytest.raises(SearchInterrupted):
        mpq.search(task, settings=FAST, db=db, fresh=True)
    monkeypatch.undo()
    resumed = mpq.search(task, settings=FAST, db=db)
    assert resumed.id == 2 and resumed.status == "done"
    columns = ["point", "label", "is_baseline", "measured_metric", "dominated"]
    assert resumed.frontier[columns].equals(uninterrupted.frontier[columns])
    assert resumed.assignments.equals(uninterrupted.assignments)


def _stopped_at_every_evaluation_then_resumed(tmp_path, stops, **options):
    """Interrupt the same search at its ``stops``-th evaluations (the float model's is the first),
    resume each, and compare with the uninterrupted run: the same frontier and configurations,
    and (without ``max_drop``, whose check measures again before it finds the run) only the
    evaluations the interrupted run had not made."""
    task = mpq.load_task("example:digits-cnn")
    evaluate, calls = task.evaluate, {"made": 0, "stop": None}

    def counted(model):
        calls["made"] += 1
        if calls["made"] == calls["stop"]:
            raise KeyboardInterrupt
        return evaluate(model)

    task.evaluate = counted
    db = tmp_path / "mpq.db"  # one store: every run reuses the first one's probe
    reference = mpq.search(task, settings=FAST, db=db, fresh=True, **options)
    total = calls["made"]
    columns = ["point", "label", "is_baseline", "predicted_loss", "measured_metric", "dominated"]
    stops = stops or range(2, total + 1)
    assert max(stops) <= total, f"the search made {total} evaluations: stops {stops} would not all stop it"
    for stop in stops:
        runs_before = len(mpq.list_runs(db))
        calls.update(made=0, stop=stop)
        with pytest.raises((SearchInterrupted, KeyboardInterrupt)):  # the latter: before the run is stored
            mpq.search(task, settings=FAST, db=db, fresh=True, **options)
        calls.update(made=0, stop=None)
        resumed = mpq.search(task, settings=FAST, db=db, **options)
        assert resumed.status == "done" and resumed.id == runs_before + 1  # the interrupted run, finished
        assert len(mpq.list_runs(db)) == runs_before + 1
        assert resumed.frontier[columns].equals(reference.frontier[columns]), f"stopped at evaluation {stop}"
        assert resumed.assignments.equals(reference.assignments), f"stopped at evaluation {stop}"
        if "max_drop" not in options:
            assert calls["made"] == total - stop + 1, f"stopped at evaluation {stop}"


def test_a_run_stopped_in_any_phase_resumes_to_the_uninterrupted_frontier(tmp_path):
    # evaluations 2-5: bisection and covering of the proxy frontier (max_points); 6-8: baselines; 9-10: refinement
    _stopped_at_every_evaluation_then_resumed(tmp_path, [7, 10], max_points=4, refine=2)


@pytest.mark.slow
@pytest.mark.parametrize(
    "options",
    [
        {"max_points": 8, "refine": 3},
        {"objectives": ["latency_s", "weight_bytes"], "max_points": 4, "refine": 2},
        {"max_drop": "2%", "refine": 2},
        {"max_points": 4, "max_evals": 9},
    ],
    ids=["region", "two-objectives", "max-drop", "max-evals"],
)
def test_a_run_stopped_at_every_evaluation_resumes_to_the_uninterrupted_frontier(tmp_path, options):
    _stopped_at_every_evaluation_then_resumed(tmp_path, None, **options)


@pytest.mark.filterwarnings("ignore::mpq.exceptions.SensitivityWarning")  # 1 % is out of reach in 6 samples, on purpose
def test_interrupted_probe_keeps_its_samples(tmp_path, monkeypatch):
    task = mpq.load_task("example:digits-cnn")
    db = tmp_path / "mpq.db"
    settings = mpq.ProbeSettings(tolerance=0.01, min_samples=6, max_samples=6)
    with pytest.raises(SearchInterrupted):
        mpq.search(task, settings=settings, db=db, progress=interrupt_at("probe", 4))
    seen = []
    resumed = mpq.search(
        task, db=db, resume=1, progress=lambda s, d, t, m: seen.append((s, d)) if s == "probe" else None
    )
    assert resumed.status == "done"
    assert min(d for _, d in seen) >= 4  # sampling went on from the saved samples, not from 0


def test_a_changed_model_or_data_refuses_to_resume(tmp_path):
    task = mpq.load_task("example:digits-cnn")
    db = tmp_path / "mpq.db"
    with pytest.raises(SearchInterrupted):
        mpq.search(task, settings=FAST, db=db, progress=interrupt_at("validate", 1))
    before = mpq.open_run(db, 1).record
    images, labels = task.calibration[0]
    other_data = dataclasses.replace(task, calibration=[(images.flip(0), labels.flip(0)), *task.calibration[1:]])
    with pytest.raises(
        InvalidParameterError,
        match=r"run 1 searched task 'digits-cnn' with calibration data [0-9a-f]{12}, but this task's calibration data hashes",
    ):
        mpq.search(other_data, db=db, resume=1)
    with torch.no_grad():
        task.model.fc2.bias.add_(0.1)
    with pytest.raises(
        InvalidParameterError,
        match=r"run 1 searched task 'digits-cnn' with model [0-9a-f]{12}, but this task's model hashes",
    ):
        mpq.search(task, db=db, resume=1)
    assert mpq.open_run(db, 1).record == before  # untouched


def kill_9_once_a_probe_sample_is_stored(command: list[str], env: dict, db) -> int:
    """Start ``command``, SIGKILL it once a probe checkpoint is in ``db``; its pid."""
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:  # wait until some probe samples are checkpointed
            time.sleep(0.2)
            if process.poll() is not None:
                pytest.fail(f"the search ended (exit {process.returncode}) before it could be killed mid-probe")
            if db.exists():
                with sqlite3.connect(db) as connection:
                    try:
                        if connection.execute("SELECT count(*) FROM probe_checkpoints").fetchone()[0]:
                            break
                    except sqlite3.OperationalError:
                        pass
        else:
            pytest.fail("no probe checkpoint appeared")
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    return process.pid


STOPPED = "run 1 did not finish: 'mpq search --resume 1' (same --db) finishes it."
RESUMED = "resuming run 1 of this same search (its process ended)"


@pytest.mark.slow
def test_kill_9_mid_probe_then_resume(tmp_path):
    db = tmp_path / "mpq.db"
    env = {**os.environ, "MPQ_DB": str(db)}
    command = [sys.executable, "-m", "mpq.cli", "search", "--tolerance", "0.01", "--max-samples", "10"]
    pid = kill_9_once_a_probe_sample_is_stored(command, env, db)
    killed = mpq.open_run(db, 1)
    assert killed.record["status"] == "running" and killed.record["owner"].endswith(f":{pid}")  # nobody could mark it
    assert killed.status == "stopped" and list(mpq.list_runs(db)["status"]) == ["stopped"]  # its process is gone
    listed = subprocess.run([sys.executable, "-m", "mpq.cli", "runs"], env=env, capture_output=True, text=True)
    assert STOPPED in " ".join(listed.stdout.split())
    # The same command again finds the run its dead process left and finishes it.
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert RESUMED in " ".join(done.stderr.split())  # the progress display wraps long messages
    assert list(mpq.list_runs(db)["status"]) == ["done"]


def test_kill_9_mid_probe_then_resume_tiny(tmp_path, capsys):
    """The fast twin: the tiny task (its loss slowed so the probe can be killed), resumed in-process."""
    db = tmp_path / "mpq.db"
    argv = ["search", "--model", TINY, "--tolerance", "0.01", "--max-samples", "10", "--max-points", "4"]
    env = {**os.environ, "MPQ_DB": str(db), "MPQ_TEST_SLOW_LOSS": "0.2"}
    pid = kill_9_once_a_probe_sample_is_stored([sys.executable, "-m", "mpq.cli", *argv], env, db)
    killed = mpq.open_run(db, 1)
    assert killed.record["status"] == "running" and killed.record["owner"].endswith(f":{pid}")  # nobody could mark it
    assert killed.status == "stopped" and list(mpq.list_runs(db)["status"]) == ["stopped"]  # its process is gone
    code, out, _ = cli(capsys, "runs", "--db", str(db))
    assert code == 0 and STOPPED in " ".join(out.split())
    # The same command again (without the slow loss: the same search) finds the run and finishes it.
    code, _, err = cli(capsys, *argv, "--db", str(db), "--json")
    assert code == 0, err
    assert RESUMED in " ".join(err.split())  # the progress display wraps long messages
    assert list(mpq.list_runs(db)["status"]) == ["done"]


def cli(capsys, *argv) -> tuple[int, str, str]:
    """Run ``mpq *argv`` in this process; its exit code, stdout and stderr."""
    from mpq.cli import main

    capsys.readouterr()
    try:
        main(list(argv))
    except SystemExit as exc:
        code = exc.code or 0
    else:
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def test_the_same_search_again_resumes_an_interrupted_run_unless_fresh(tmp_path, monkeypatch):
    task = mpq.load_task("example:digits-cnn")
    db = tmp_path / "mpq.db"
    with pytest.raises(SearchInterrupted):
        mpq.search(task, settings=FAST, db=db, progress=interrupt_at("validate", 2))
    for name in ("run_probe", "omega"):
        monkeypatch.setattr(_search, name, lambda *a, **k: pytest.fail("recomputed a stored stage"))
    messages = []
    again = mpq.search(task, settings=FAST, db=db, progress=lambda stage, d, t, message: messages.append(message))
    assert again.id == 1 and again.status == "done" and again.record["error"] is None
    assert "resuming run 1 of this same search (interrupted (Ctrl-C)); --fresh starts a new run" in messages
    monkeypatch.undo()
    # A different search (here: other budgets) or fresh=True starts a new run.
    with pytest.raises(SearchInterrupted):
        mpq.search(task, settings=FAST, db=db, progress=interrupt_at("validate", 1))
    assert mpq.search(task, settings=FAST, db=db, fresh=True, max_points=3).id == 3
    assert mpq.open_run(db, 2).status == "failed"


def test_a_run_another_live_process_owns_is_neither_resumed_nor_taken(tmp_path):
    task = mpq.load_task("example:digits-cnn")
    db = tmp_path / "mpq.db"
    with pytest.raises(SearchInterrupted):
        mpq.search(task, settings=FAST, db=db, progress=interrupt_at("validate", 1))
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with sqlite3.connect(db) as connection:  # as a search still running in that process leaves it
            connection.execute(
                "UPDATE runs SET status = 'running', owner = ? WHERE id = 1", (f"{socket.gethostname()}:{alive.pid}",)
            )
        with pytest.raises(InvalidParameterError, match=rf"run 1 is being run by process .*:{alive.pid} right now"):
            mpq.search(task, db=db, resume=1)
        assert mpq.search(task, settings=FAST, db=db, max_points=3, validate=False).id == 2
        assert mpq.open_run(db, 1).status == "running"
    finally:
        alive.kill()
        alive.wait()
    assert mpq.open_run(db, 1).status == "stopped"  # its owner is gone now


def test_a_changed_cost_table_is_another_search(tmp_path):
    task = mpq.load_task("example:digits-cnn")
    db = tmp_path / "mpq.db"
    with pytest.raises(SearchInterrupted):
        mpq.search(task, target="cpu-x86", settings=FAST, db=db, progress=interrupt_at("validate", 1))
    costs = mpq.open_run(db, 1).tables["costs"]
    measured = costs[["layer", "candidate"]].assign(latency_s=costs["latency_s"] * 2)
    assert mpq.search(task, target="cpu-x86", settings=FAST, db=db, measured=measured).id == 2
