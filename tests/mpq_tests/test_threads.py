"""mpq sets torch's intra-op threads itself: 1 by default, ``threads=`` / ``--threads`` /
``$MPQ_THREADS`` to choose; the probe, the evaluations and the workers run on them, the run
records them, and the caller's own count comes back afterwards."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import mpq
from mpq._executors import Runner
from mpq._threads import resolve_threads
from mpq.cli import main
from mpq.exceptions import InvalidParameterError

TINY = f"{Path(__file__).parents[1] / 'assets' / 'tasks' / 'tiny_task.py'}:make_task"
FAST = mpq.ProbeSettings(tolerance=0.5, min_samples=2, max_samples=3)


def _threads_seen(task: mpq.Task, memo: dict) -> int:
    return torch.get_num_threads()


@pytest.fixture
def caller_threads():
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    yield 3
    torch.set_num_threads(before)


def test_threads_come_from_the_argument_then_the_environment_then_one(monkeypatch):
    monkeypatch.delenv("MPQ_THREADS", raising=False)
    assert resolve_threads("search", None) == 1
    monkeypatch.setenv("MPQ_THREADS", "2")
    assert resolve_threads("search", None) == 2
    assert resolve_threads("search", 4) == 4
    for env, given in (("0", None), ("two", None), ("2", 0), ("2", 1.5)):
        monkeypatch.setenv("MPQ_THREADS", env)
        with pytest.raises(InvalidParameterError) as info:
            resolve_threads("search", given)
        assert "\n" not in str(info.value) and ("MPQ_THREADS" in str(info.value) or "'threads'" in str(info.value))


def test_search_runs_its_probe_and_evaluations_on_its_threads_and_records_them(tmp_path, caller_threads, monkeypatch):
    monkeypatch.delenv("MPQ_THREADS", raising=False)
    task = mpq.load_task(TINY)
    seen = []
    evaluate, loss_fn = task.evaluate, task.loss_fn
    task.evaluate = lambda m: (seen.append(("evaluate", torch.get_num_threads())), evaluate(m))[1]
    task.loss_fn = lambda o, t: (seen.append(("loss", torch.get_num_threads())), loss_fn(o, t))[1]
    run = mpq.search(task, db=tmp_path / "mpq.db", settings=FAST, max_points=2)
    assert run.record["settings"]["threads"] == 1
    assert {what for what, _ in seen} == {"evaluate", "loss"} and {n for _, n in seen} == {1}
    assert torch.get_num_threads() == caller_threads  # the caller's own count, restored
    table = mpq.probe(task, settings=FAST, threads=2)
    assert not table.empty and {n for what, n in seen[-3:]} == {2}
    assert torch.get_num_threads() == caller_threads


def test_workers_run_on_the_search_threads(caller_threads):
    task = mpq.load_task(TINY)
    with ThreadPoolExecutor(1) as pool:
        assert Runner(task, pool, threads=2).call(_threads_seen, (), "threads") == 2


@pytest.mark.slow  # a worker process starts (torch imported): several seconds on 2 busy cores
def test_worker_processes_run_on_the_search_threads():
    task = mpq.load_task(TINY)
    with mpq.ProcessPool(1) as pool:
        assert Runner(task, pool, threads=2).call(_threads_seen, (), "threads") == 2


def test_cli_threads_recorded_shown_and_refused_in_one_line(tmp_path, capsys, monkeypatch):
    db = str(tmp_path / "mpq.db")
    monkeypatch.setenv("MPQ_THREADS", "2")
    args = ["search", "--model", TINY, "--target", "cpu-x86", "--db", db, "--tolerance", "0.5", "--max-samples", "3"]
    main([*args, "--json"])
    assert json.loads(capsys.readouterr().out)["threads"] == 2
    main(["show", "1", "--db", db])
    assert "torch threads 2" in capsys.readouterr().out
    for argv, env in (([*args, "--threads", "0"], "2"), (args, "many")):
        monkeypatch.setenv("MPQ_THREADS", env)
        with pytest.raises(SystemExit) as info:
            main(argv)
        err = capsys.readouterr().err
        assert info.value.code == 2 and err.count("\n") == 1 and err.startswith("mpq: error:"), err
    assert mpq.list_runs(db)["run"].tolist() == [1]  # nothing stored by the refused commands


def test_measure_times_on_the_threads_it_is_given(capsys, monkeypatch, caller_threads):
    monkeypatch.delenv("MPQ_THREADS", raising=False)
    seen = []
    measure_latency = mpq.measure_latency
    monkeypatch.setattr(
        mpq, "measure_latency", lambda *a, **k: (seen.append(torch.get_num_threads()), measure_latency(*a, **k))[1]
    )
    main(["measure", "--model", TINY, "--candidates", "w8a8", "--warmup", "0", "--repeats", "1", "--threads", "2"])
    assert seen == [2] and "2 threads" in capsys.readouterr().out
    main(["measure", "--model", TINY, "--candidates", "w8a8", "--warmup", "0", "--repeats", "1"])
    assert seen == [2, 1] and "1 threads" in capsys.readouterr().out
    assert torch.get_num_threads() == caller_threads
