"""mpq.search with an allowed drop, an evaluation budget and refinement, on a synthetic task.

The task is a seeded MLP scored by the cosine similarity of its outputs to the float model's
(self-distillation, as MiniLM's example): a metric that falls smoothly with coarser formats, so
"the cheapest configuration within the drop" has a definite answer to check against.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

import mpq
from mpq.exceptions import DropNotMetError, InvalidParameterError, SearchInterrupted

FAST = mpq.ProbeSettings(tolerance=0.3, min_samples=2, max_samples=4)
TARGET = dict(target="cpu-x86", objectives=["weight_bytes"], settings=FAST)


def make_task() -> mpq.Task:
    generator = torch.Generator().manual_seed(1)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(16, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 8)).eval()
    inputs = torch.randn(96, 16, generator=generator)
    with torch.no_grad():
        reference = model(inputs)
    calibration = [(inputs[i : i + 32], reference[i : i + 32]) for i in (0, 32)]

    def evaluate(m: nn.Module) -> float:
        with torch.no_grad():
            return float(nn.functional.cosine_similarity(m(inputs[64:]), reference[64:], dim=1).mean())

    return mpq.Task("mlp", model, calibration, nn.functional.mse_loss, evaluate, "cosine")


def counted(task: mpq.Task) -> tuple[mpq.Task, list]:
    calls = []

    def evaluate(model: nn.Module) -> float:
        calls.append(1)
        return task.evaluate(model)

    return dataclasses.replace(task, evaluate=evaluate), calls


def test_the_cheapest_configuration_within_the_drop_is_measured_and_within_it(tmp_path):
    task, calls = counted(make_task())
    run = mpq.search(task, **TARGET, max_drop=0.002, max_evals=12, db=tmp_path / "runs.db")
    assert run.record["evaluations"] == len(calls) <= 12  # the float model's evaluation included
    best = run.best(max_drop=0.002)
    float_metric = run.record["float_metric"]
    assert best["measured_metric"] >= float_metric - 0.002
    highest = run.frontier[run.frontier["label"] == "highest"].iloc[0]
    assert best["weight_bytes"] < highest["weight_bytes"]  # it found something cheaper than the start
    # no measured configuration within the drop is cheaper than the one returned
    within = run.frontier[run.frontier["measured_metric"] >= float_metric - 0.002]
    assert within["weight_bytes"].min() == best["weight_bytes"]
    # every measured point has its dominance, the best one is not dominated
    measured = run.frontier[run.frontier["measured_metric"].notna()]
    assert measured["dominated"].notna().all() and not bool(best["dominated"])
    assert run.best(max_drop="1%")["measured_metric"] >= float_metric * 0.99


def test_refine_spends_exactly_its_extra_evaluations_and_extends_the_measured_frontier(tmp_path):
    task, calls = counted(make_task())
    plain = mpq.search(task, **TARGET, max_evals=6, db=tmp_path / "a.db")
    assert plain.record["evaluations"] == len(calls) <= 6
    calls.clear()
    refined = mpq.search(task, **TARGET, max_evals=6, refine=5, db=tmp_path / "b.db")
    assert refined.record["evaluations"] == len(calls) == plain.record["evaluations"] + 5
    measured = refined.frontier[refined.frontier["measured_metric"].notna()]
    before = plain.frontier[plain.frontier["measured_metric"].notna()]

    def configurations(run, points) -> set:
        return {tuple(sorted(run.assignment(p).items())) for p in points["point"]}

    # A proxy optimum that is also a baseline is a point of its own sharing the baseline's
    # measurement: count measured configurations, not points.
    assert len(configurations(refined, measured)) == len(configurations(plain, before)) + 5
    # refinement measured configurations the plain search did not, and one of them is on the measured frontier
    plain_configurations = configurations(plain, before)
    is_new = [tuple(sorted(refined.assignment(p).items())) not in plain_configurations for p in measured["point"]]
    assert (
        len({c for c, new in zip(measured["point"], is_new) if new}) >= 5
        and (~measured.loc[is_new, "dominated"].astype(bool)).any()
    )


def test_an_interrupted_drop_search_resumes_without_measuring_anything_again(tmp_path):
    db = tmp_path / "runs.db"
    task, calls = counted(make_task())
    uninterrupted = mpq.search(task, **TARGET, max_drop=0.002, max_evals=10, refine=3, db=tmp_path / "whole.db")
    total = len(calls)

    stop_after, stop = 7, {"at": total + 7}

    def interrupting(model: nn.Module) -> float:
        if len(calls) == stop["at"]:
            raise KeyboardInterrupt
        calls.append(1)
        return make_task().evaluate(model)

    # One evaluate function for both: a run resumes only with the metric it measured.
    stopping = dataclasses.replace(task, evaluate=interrupting)
    with pytest.raises(SearchInterrupted):
        mpq.search(stopping, **TARGET, max_drop=0.002, max_evals=10, refine=3, db=db)
    calls.clear()
    stop["at"] = None
    resumed = mpq.search(stopping, **TARGET, max_drop=0.002, max_evals=10, refine=3, db=db, resume=1)
    assert resumed.status == "done"
    assert resumed.record["evaluations"] == uninterrupted.record["evaluations"]
    assert len(calls) == uninterrupted.record["evaluations"] - stop_after  # nothing measured twice
    best, again = uninterrupted.best(max_drop=0.002), resumed.best(max_drop=0.002)
    assert (best["weight_bytes"], best["measured_metric"]) == (again["weight_bytes"], again["measured_metric"])


def test_a_drop_no_configuration_meets_is_refused_before_anything_is_stored(tmp_path):
    db = tmp_path / "runs.db"
    with pytest.raises(
        DropNotMetError,
        match=r"the most precise one the target runs measures .* against the float "
        r"model's .*; allow a drop of at least that",
    ):
        mpq.search(make_task(), **TARGET, candidates=["w4a8"], max_drop=1e-6, db=db)
    assert not db.exists()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_drop": -0.1}, r"The 'max_drop' parameter of search must be a number >= 0"),
        ({"max_drop": "100%"}, r"The 'max_drop' parameter of search must be .* below 100%"),
        ({"max_evals": 1}, r"The 'max_evals' parameter of search must be an int in the range \[2, inf\)"),
        ({"refine": -1}, r"The 'refine' parameter of search must be an int in the range \[0, inf\)"),
        ({"max_drop": 0.01, "validate": False}, r"max_drop need measured evaluations, and validate=False"),
    ],
)
def test_bad_drop_arguments_are_one_line_and_store_nothing(tmp_path, kwargs, message):
    db = tmp_path / "runs.db"
    with pytest.raises(InvalidParameterError, match=message):
        mpq.search(make_task(), **TARGET, db=db, **kwargs)
    assert not db.exists()


def test_drop_and_refine_need_an_evaluate_function(tmp_path):
    task = dataclasses.replace(make_task(), evaluate=None)
    for kwargs in ({"max_drop": 0.01}, {"refine": 3}):
        with pytest.raises(InvalidParameterError, match=r"has no evaluate function, and (max_drop|refine) need"):
            mpq.search(task, **TARGET, db=tmp_path / "runs.db", **kwargs)
    assert not (tmp_path / "runs.db").exists()


def test_a_drop_search_with_refinement_resumed_anywhere_stores_what_one_never_interrupted_stores(tmp_path):
    """Refinement reads the stored points' pool: a resumed drop search must see the same (none)."""
    task = make_task()
    kwargs = dict(**TARGET, max_drop=0.002, max_evals=8, refine=3)
    whole = mpq.search(task, **kwargs, db=tmp_path / "whole.db")
    configurations = [tuple(sorted(whole.assignment(p).items())) for p in sorted(whole.frontier["point"])]
    spent = whole.record["evaluations"]
    assert spent > 6  # the float model, the most precise configuration, and the strategies'
    for stop in (2, spent // 2, spent - 2):  # in the bisection, the repair, the refinement or the uniforms
        db = tmp_path / f"stopped-{stop}.db"

        def interrupt(stage, done, total, message, stop=stop):
            if stage == "validate" and done == stop:
                raise KeyboardInterrupt

        with pytest.raises(SearchInterrupted):
            mpq.search(task, **kwargs, db=db, progress=interrupt)
        resumed = mpq.search(task, db=db, resume=1)
        stored = [tuple(sorted(resumed.assignment(p).items())) for p in sorted(resumed.frontier["point"])]
        assert stored == configurations and resumed.record["evaluations"] == whole.record["evaluations"]
