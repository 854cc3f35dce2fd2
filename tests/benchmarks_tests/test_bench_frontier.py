"""benchmarks/bench_frontier.py on the tiny task: every method's evaluation cap, the hypervolume, the optimum check."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_frontier.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_frontier", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def counted(tiny_task):
    """The tiny task, and the list that grows by one at each call of its evaluate."""
    calls = []

    def evaluate(model):
        calls.append(1)
        return tiny_task.evaluate(model)

    task = dataclasses.replace(tiny_task, evaluate=evaluate)
    return task, calls


def setup_of(bench, task):
    # Weight bytes: every layer's four candidates cost differently (zcu104's latency ties most
    # of them), and w2a2 or w4a4 in the first layer costs the tiny model more than the 0.01 drop,
    # so the longest cumulative prefix is not within the drop and phase 2 has to search.
    return bench.prepare("tiny", bench.TaskSpec("tiny", "zcu104", "weight_bytes"), task, need_omega=False)


def test_the_random_baseline_keeps_its_cap_with_the_float_model_counted(bench, counted):
    task, calls = counted
    setup = setup_of(bench, task)
    assert len(calls) == 1  # the float model
    ledger = bench.Ledger(setup, 8)
    bench.run_random(setup, ledger, 0)
    assert len(calls) <= 8 and ledger.spent == 8 and len(ledger.points) == ledger.spent - 1
    with pytest.raises(bench.BudgetSpent):
        bench.Ledger(setup, 1).measure(setup.highest())


@pytest.mark.parametrize("method", ["greedy", "nsga2", "drop"])
def test_mpq_strategies_keep_the_cap_and_report_what_they_measured(bench, counted, tmp_path, method):
    task, calls = counted
    setup = setup_of(bench, task)
    calls.clear()
    points, evaluations, notes = bench.run_mpq(setup, 8, tmp_path / "bench.db", method=method, label=method)
    # the float model (the search's own) and at most 7 configurations; the run's count agrees
    assert evaluations == len(calls) <= 8 and notes == ""
    assert 2 <= len(set(points)) <= evaluations - 1


def test_hypervolume_of_a_staircase(bench):
    box = (0.0, 10.0, 0.0, 1.0)
    assert bench.hypervolume([], box) == 0.0
    assert bench.hypervolume([(0.0, 1.0)], box) == pytest.approx(1.0)
    # (2, 0.5) dominates [2, 10] x [0, 0.5]; (6, 0.8) adds [6, 10] x [0.5, 0.8]; (8, 0.4) adds nothing
    assert bench.hypervolume([(2.0, 0.5), (6.0, 0.8), (8.0, 0.4)], box) == pytest.approx((8 * 0.5 + 4 * 0.3) / 10)
    assert bench.hypervolume([(1.0, 2.0)], box) == pytest.approx(0.9)  # a metric above the box counts as its top


def test_the_optimum_check_measures_every_cheaper_configuration(bench, counted, capsys):
    task, calls = counted
    setup = setup_of(bench, task)
    highest = setup.highest()
    cost = setup.total_cost(highest)
    bench.check_optimum(setup, cost, setup.float_metric - bench.DROP)
    everything = [dict(zip(setup.layer_names, c)) for c in itertools.product(*map(setup.options, setup.layer_names))]
    cheaper = [a for a in everything if setup.total_cost(a) < cost * (1 - 1e-9)]
    assert len(calls) == 1 + len(cheaper)  # the float model, then each cheaper configuration once
    out = capsys.readouterr().out
    assert f"{len(cheaper)} of the {len(everything)} configurations cost less than" in out
    # below the all-highest cost there is something within the drop on the tiny task
    within = any(setup.measure(a) >= setup.float_metric - bench.DROP for a in cheaper)
    assert ("ONE IS within the drop" in out) == within
