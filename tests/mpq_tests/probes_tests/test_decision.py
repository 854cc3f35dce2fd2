"""The probe's decision stop rule: it stops when the proxy's ranking is resolved within the
estimator's error, not when every layer's trace is within 5 %; the hull it ranks by is the
Lagrangian optimum at every price; the search records the rule in its probe settings."""

import itertools
import random
import warnings
from pathlib import Path

import pytest

import mpq
from mpq._probes import settings_from_json
from mpq._search.decision import hull
from mpq._storage import Store
from mpq.cli import main
from mpq.exceptions import SensitivityWarning

TINY = f"{Path(__file__).parents[2] / 'assets' / 'tasks' / 'tiny_task.py'}:make_task"


def test_hull_configurations_are_the_lagrangian_optima_cheapest_first():
    rng = random.Random(0)
    layers, candidates = ["a", "b", "c"], ["w2", "w4", "w8", "w16"]
    costs = {(l, c): rng.uniform(0, 1) for l in layers for c in candidates}
    omega = {(l, c): rng.uniform(0, 1) for l in layers for c in candidates}
    configurations = [dict(zip(layers, choice)) for choice in itertools.product(candidates, repeat=len(layers))]

    def priced(assignment):
        return sum(costs[(l, c)] for l, c in assignment.items()), sum(omega[(l, c)] for l, c in assignment.items())

    points = hull(omega, costs)
    assert [p[0] for p in points] == sorted(p[0] for p in points)
    for cost, loss, assignment in points:
        assert (cost, loss) == pytest.approx(priced(assignment))
    for price in (0.0, 0.01, 0.1, 0.5, 1.0, 3.0, 100.0):  # every price's optimum is on the hull
        best = min(priced(a)[1] + price * priced(a)[0] for a in configurations)
        assert min(loss + price * cost for cost, loss, _ in points) == pytest.approx(best)


def test_decision_rule_stops_when_told_and_samples_on_to_the_cap_when_never(mlp_task):
    settings = mpq.ProbeSettings(stop="decision", min_samples=3, max_samples=6, tolerance=0.01)
    checks = []

    def resolved(table):
        checks.append(table.attrs["samples"])
        assert {"layer", "probe", "value", "stderr"} <= set(table.columns)
        return True

    table = mpq.probe(mlp_task, settings=settings, decision=resolved)
    assert checks == [3] and table["converged"].all()
    assert (table.loc[table["stderr"] > 0, "n_samples"] == 3).all()
    with pytest.warns(SensitivityWarning, match="frontier still moves"):
        table = mpq.probe(mlp_task, settings=settings, decision=lambda table: False)
    assert (table.loc[table["stderr"] > 0, "n_samples"] == 6).all() and not table["converged"].all()


def test_search_stops_its_probe_on_the_decision_and_records_the_rule(tmp_path):
    task = mpq.load_task(TINY)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SensitivityWarning)
        run = mpq.search(task, db=tmp_path / "mpq.db", target="cpu-x86", validate=False)
        per_layer = mpq.search(
            task,
            db=tmp_path / "mpq.db",
            target="cpu-x86",
            validate=False,
            settings=mpq.ProbeSettings(tolerance=0.05, max_samples=60),
        )
    store = Store(tmp_path / "mpq.db")
    settings = {r.id: settings_from_json(store.run_record(r.id)["settings"]["probe"]) for r in (run, per_layer)}
    assert settings[run.id].stop == "decision" and settings[per_layer.id].stop == "tolerance"
    samples = {
        r.id: int(store.run_tables(r.id)["sensitivity"].query("stderr > 0")["n_samples"].max())
        for r in (run, per_layer)
    }
    assert samples[run.id] < samples[per_layer.id]


def test_cli_takes_one_of_the_two_tolerances(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["search", "--db", str(tmp_path / "mpq.db"), "--tolerance", "0.1", "--probe-tolerance", "0.05"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "--probe-tolerance" in err and err.count("\n") == 1
    assert not (tmp_path / "mpq.db").exists()


def test_the_stop_rules_quantization_errors_are_timed_as_the_probe(tmp_path, monkeypatch):
    # bench_search times a stage from its first report: the errors the decision rule computes
    # before the first sample belong to the probe, not to the costs stage before it.
    import mpq._search.pipeline as pipeline

    reported: list[str] = []
    built = pipeline.frontier_decision

    def frontier_decision(*args):
        reported.append("errors")
        return built(*args)

    monkeypatch.setattr(pipeline, "frontier_decision", frontier_decision)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SensitivityWarning)
        mpq.search(
            mpq.load_task(TINY),
            db=tmp_path / "mpq.db",
            target="cpu-x86",
            validate=False,
            progress=lambda stage, done, total, message: reported.append(stage),
        )
    stages = [stage for stage, _ in itertools.groupby(reported)]
    assert stages.index("probe") < stages.index("errors") < stages.index("omega")


def test_a_probe_stopped_on_one_targets_decision_is_not_reused_for_another(tmp_path):
    # cpu-x86 and cpu-x86-avx2 quantize alike (asymmetric inputs), so the probe settings are
    # equal; the stop rule checked only cpu-x86's costs, so cpu-x86-avx2 must probe its own.
    task = mpq.load_task(TINY)
    messages: dict[str, list[str]] = {}

    def search(target: str, label: str) -> None:
        messages[label] = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SensitivityWarning)
            mpq.search(
                task,
                db=tmp_path / "mpq.db",
                target=target,
                validate=False,
                progress=lambda stage, done, total, message: messages[label].append(message),
            )

    def reused(label: str) -> bool:
        return any("reused the stored probe" in message for message in messages[label])

    search("cpu-x86", "first")
    search("cpu-x86-avx2", "other target")
    search("cpu-x86", "same target")
    assert not reused("first") and not reused("other target") and reused("same target")
    store = Store(tmp_path / "mpq.db")
    keys = {store.run_record(int(run))["probe_key"] for run in store.list_runs()["run"]}
    assert len(keys) == 2
