"""benchmarks/bench_frontier.py's baselines on the tiny task: evaluation caps, AMP's phase 2, the hypervolume."""

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


@pytest.mark.parametrize("method", ["amp", "random"])
def test_the_evaluation_cap_holds_with_the_float_model_counted(bench, counted, method):
    task, calls = counted
    setup = setup_of(bench, task)
    assert len(calls) == 1  # the float model
    ledger = bench.Ledger(setup, 8)
    {"amp": bench.run_amp, "random": bench.run_random}[method](setup, ledger, 0)
    assert len(calls) <= 8
    assert ledger.spent <= 8
    assert len(ledger.points) == ledger.spent - 1
    with pytest.raises(bench.BudgetSpent):
        bench.Ledger(setup, 1).measure(setup.highest())


def test_amp_phase_two_returns_a_measured_configuration_within_the_drop(bench, counted):
    task, _ = counted
    setup = setup_of(bench, task)
    ledger = bench.Ledger(setup, 8)
    chosen = bench.run_amp(setup, ledger, 0)
    assert chosen is not None
    measured = {tuple(sorted(a.items())): m for _, m, a in ledger.points}
    key = tuple(sorted(chosen.items()))
    assert key in measured
    assert measured[key] >= setup.float_metric - bench.DROP
    assert ledger.spent > 2  # phase 1 ran: more than the float model and all-highest
    assert chosen != setup.highest()  # phase 2 moved: some change was within the drop


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
