"""The strategy contract: every search strategy, on synthetic (omega, cost, metric) tables whose
true metric is known, measured through the real :class:`Evaluator` with a synthetic measurement
(milliseconds per case, no model).

For every strategy and chain: never over the evaluation budget; nothing measured twice; a search
stopped at any evaluation and resumed makes the choices of one never stopped; with a drop, the
answer is no costlier than any uniform configuration within it. And the two misses a peer found
on digits, each as a table shaped like it, cannot happen.
"""

from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pytest

import solvers
from mpq._measured_frontier import configuration_key, dominated
from mpq._search.evaluator import DEFAULT_DROP_EVALS, UNBOUNDED, Evaluator
from mpq._search.strategies import STRATEGIES, check_strategy, default_strategy, spend
from mpq._search.strategies.local import cheapest_within
from mpq._search.strategies.proxy import bisect
from mpq.exceptions import InvalidParameterError, UnknownNameError

FLOAT_METRIC = 1.0


@dataclass
class Table:
    """Omega and cost tables and the true metric of every configuration."""

    omega: pd.DataFrame
    costs: pd.DataFrame
    damage: dict[tuple[str, str], float]
    floor_metric: float = 0.0  # a collapsed model still scores this (chance accuracy)

    def truth(self, assignment) -> float:
        return max(self.floor_metric, FLOAT_METRIC - sum(self.damage[pair] for pair in assignment.items()))

    def uniform(self, candidate: str) -> dict[str, str]:
        return dict.fromkeys(dict.fromkeys(self.omega["layer"]), candidate)


def misjudged_table(seed: int, layers: int = 5) -> Table:
    """Latency ~ bits; the proxy misjudges layer l0 at 2 bits (it collapses the model)."""
    rng = np.random.default_rng(seed)
    rows, damage = [], {}
    for i in range(layers):
        size = rng.uniform(1, 4)
        for bits, cand in zip((2, 4, 8), ("w2a2", "w4a4", "w8a8")):
            noise = size * 4.0 ** -(bits / 2)
            rows.append((f"l{i}", cand, noise, size * bits))
            damage[f"l{i}", cand] = noise * (40.0 if (i == 0 and bits == 2) else 1.0) * 0.05
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", "latency_s"])
    return Table(frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", "latency_s"]], damage)


def uniform_miss_table() -> Table:
    """Shaped like digits on zcu104 with ``--objective bops``: the proxy prices 4-bit activations
    on the two first layers as ruinous and 2-bit weights as nearly free, so its frontier below
    all-w8a8 mixes w2 and w8; the truth is the other way round, and uniform w4a4 is within a 0.01
    drop at a cost below every configuration within it that the proxy leads to."""
    rows, damage = [], {}
    sizes = [1.0, 4.0, 4.0, 2.0, 1.0, 0.5]
    for i, size in enumerate(sizes):
        for cand, bits in (("w2a2", 2), ("w2a8", 5), ("w4a4", 4), ("w8a8", 8)):
            proxy = {"w2a2": 0.02, "w2a8": 0.001, "w4a4": 0.5 if i < 2 else 0.002, "w8a8": 0.0}[cand]
            true = {"w2a2": 0.5, "w2a8": 0.2, "w4a4": 0.001, "w8a8": 0.0}[cand]
            rows.append((f"l{i}", cand, proxy * size, size * bits * bits))
            damage[f"l{i}", cand] = true
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", "bops"])
    return Table(frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", "bops"]], damage, 0.1)


def coverage_miss_table() -> Table:
    """Shaped like digits with w2a8/w4a8/w8a8 on weight bytes: one large layer and small
    sensitive ones, so the metric falls below the usable region (10 % of float) well above
    all-2-bit, and a configuration at 0.3 of the 8-bit size still measures about 0.8; the
    bisection and the region's covering measure nothing at or below 0.3 of the size."""
    rows, damage = [], {}
    sizes = [80.0, 6.0, 5.0, 4.0, 3.0, 2.0]
    for i, size in enumerate(sizes):
        sensitive = i > 0
        for cand, bits in (("w2a8", 2), ("w4a8", 4), ("w8a8", 8)):
            true = {"w2a8": 0.2 if sensitive else 0.12, "w4a8": 0.02 if sensitive else 0.01, "w8a8": 0.0}[cand]
            rows.append((f"l{i}", cand, true * (1.2 if sensitive else 0.8), size * bits))
            damage[f"l{i}", cand] = true
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", "weight_bytes"])
    return Table(frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", "weight_bytes"]], damage, 0.1)


@dataclass
class Mirrored(Table):
    """The same table measured as a lower-is-better metric (a perplexity): ``2 - truth``, which
    rises exactly as the truth falls, from the same float value (``FLOAT_METRIC`` is 1)."""

    @classmethod
    def of(cls, table: Table) -> Mirrored:
        return cls(table.omega, table.costs, table.damage, table.floor_metric)

    def truth(self, assignment) -> float:
        return 2 * FLOAT_METRIC - super().truth(assignment)


def bits_of(candidate: str) -> tuple[float, float]:
    """(weight bits, activation bits) of a synthetic candidate name such as ``w4a8``."""
    weights, acts = candidate.removeprefix("w").split("a")
    return float(weights), float(acts)


@dataclass
class Synthetic:
    """The pipeline's side of a search, synthetic: measures by the table's truth, counts calls,
    and can stop the search (as Ctrl-C does) at one evaluation."""

    table: Table
    stop_at: int | None = None
    calls: list[tuple] = field(default_factory=list)
    handed: list[int] = field(default_factory=list)

    def starting(self, solution, spent):
        if self.stop_at is not None and spent - 1 == self.stop_at:
            raise KeyboardInterrupt
        return f"point {spent}"

    def record(self, solution, metric):
        self.calls.append(configuration_key(solution.assignment))

    def submit(self, solution):
        truth = self.table.truth(solution.assignment)
        handed = self.handed

        class Pending:
            label = "ahead"

            def result(self):
                return truth

            def cancel(self):
                handed.append(-1)

        handed.append(1)
        return Pending()


def evaluator(
    table: Table,
    synthetic: Synthetic,
    *,
    objective: str,
    drop,
    max_evals,
    width=1,
    replay=None,
    max_points=8,
    uniforms=None,
    higher_is_better=True,
    ties=(),
):
    omega, costs = table.omega, table.costs
    proxy = []

    def solve_proxy():
        if not proxy:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)  # 64 optima are enough here
                proxy.extend(solvers.frontier(omega, costs, [objective], max_points=64, ties=[list(t) for t in ties]))
        return proxy

    layers = list(dict.fromkeys(omega["layer"]))
    candidates = list(dict.fromkeys(costs["candidate"]))
    ev = Evaluator(
        omega,
        costs,
        objective,
        {},
        float_metric=FLOAT_METRIC,
        drop=drop,
        max_points=max_points,
        max_evals=max_evals or (DEFAULT_DROP_EVALS if drop is not None else UNBOUNDED),
        spent=1,
        submit=synthetic.submit,
        recorder=synthetic,
        proxy=solve_proxy,
        uniforms=uniforms or {c: solvers.price(omega, costs, dict.fromkeys(layers, c)) for c in candidates},
        replay=dict(replay or {}),
        width=width,
        budget_named=max_evals is not None,
        bits={c: bits_of(c) for c in candidates},
        higher_is_better=higher_is_better,
        ties=ties,
    )
    return ev


TABLES = {
    "misjudged": (lambda: misjudged_table(4), "latency_s"),
    "uniform-miss": (uniform_miss_table, "bops"),
    "coverage-miss": (coverage_miss_table, "weight_bytes"),
}
#: Every built-in strategy alone, and the chains the defaults make.
CHAINS = [(name,) for name in STRATEGIES] + [("region", "frontier"), ("region", "refine"), ("drop", "refine")]
DROP = 0.05
REFINE = 4


def run(
    table_name, chain, *, max_evals, stop_at=None, replay=None, width=1, max_points=8, higher_is_better=True, ties=()
):
    make, objective = TABLES[table_name]
    table = make() if higher_is_better else Mirrored.of(make())
    synthetic = Synthetic(table, stop_at)
    ev = evaluator(
        table,
        synthetic,
        objective=objective,
        drop=_drop(chain),
        max_evals=max_evals,
        width=width,
        replay=replay,
        max_points=max_points,
        higher_is_better=higher_is_better,
        ties=ties,
    )
    spend(ev, chain, refine=REFINE)
    return ev, synthetic, table


def _drop(chain):
    """The drop a chain's search is given: every chain but the proxy's coverings answers one."""
    return None if chain[0] in ("region", "frontier") else DROP


def budget_for(chain):
    return 16 if "nsga2" in chain else None


@pytest.mark.parametrize("table_name", list(TABLES))
@pytest.mark.parametrize("chain", CHAINS, ids=",".join)
def test_within_budget_nothing_twice_and_no_uniform_cheaper_within_the_drop(table_name, chain):
    for max_evals in (budget_for(chain), 7, 12):
        ev, synthetic, table = run(table_name, chain, max_evals=max_evals)
        assert ev.spent - 1 == len(synthetic.calls) == len(set(synthetic.calls))  # each measured once
        extra = REFINE if "refine" in chain else 0  # refine=N evaluations come beside max_evals
        assert ev.spent <= ev.max_evals and (max_evals is None or ev.spent <= max_evals + extra)
        if ev.drop is None:
            continue
        answer = cheapest_within(ev, ev.floor)
        for solution in ev.uniforms.values():
            cost = solution.costs[ev.objective]
            if answer is None or cost < answer.costs[ev.objective]:
                key = configuration_key(solution.assignment)
                # a cheaper uniform configuration was measured outside the drop, or a configuration
                # at least as precise on every layer was
                measured_outside = key in ev.known and ev.known[key][1] < ev.floor
                assert measured_outside or ev.shown_outside(solution), (chain, max_evals, solution.assignment)


@pytest.mark.parametrize("table_name", ["misjudged", "uniform-miss"])
@pytest.mark.parametrize("chain", CHAINS, ids=",".join)
def test_a_search_stopped_at_any_evaluation_resumes_to_the_choices_of_one_never_stopped(table_name, chain):
    whole, calls, _ = run(table_name, chain, max_evals=budget_for(chain) or 14)
    for stop_at in range(len(calls.calls)):
        before = _stopped(table_name, chain, stop_at)
        replay = {key: metric for key, (_, metric) in before.known.items()}
        resumed, again, _ = run(table_name, chain, max_evals=budget_for(chain) or 14, replay=replay)
        assert list(resumed.known.items()) == list(whole.known.items())  # the same, in the same order
        assert again.calls == calls.calls[stop_at:] and resumed.spent == whole.spent and not resumed.replay


def _stopped(table_name, chain, stop_at):
    """The evaluator of a search stopped (Ctrl-C) at evaluation ``stop_at``: what it had measured."""
    make, objective = TABLES[table_name]
    table = make()
    ev = evaluator(
        table, Synthetic(table, stop_at), objective=objective, drop=_drop(chain), max_evals=budget_for(chain) or 14
    )
    with pytest.raises(KeyboardInterrupt):
        spend(ev, chain, refine=REFINE)
    return ev


@pytest.mark.parametrize("chain", [("drop",), ("greedy",), ("region", "frontier")], ids=",".join)
def test_evaluations_started_ahead_change_nothing_that_is_measured(chain):
    one, calls, _ = run("misjudged", chain, max_evals=20)
    wide, wide_calls, _ = run("misjudged", chain, max_evals=20, width=4)
    assert wide_calls.calls == calls.calls and list(wide.known) == list(one.known)
    if chain != ("greedy",):  # AMP's phases measure one at a time
        assert 1 in wide_calls.handed


def test_miss_1_a_cheaper_uniform_within_the_drop_is_measured_and_kept():
    """digits, ``--max-drop 0.01 --objective bops``: uniform all-w4a4 measured 0.97586 within the
    drop at 12,488,704 BOPs while the search kept 13,033,472; the proxy never led there."""
    table = uniform_miss_table()
    w4a4 = solvers.price(table.omega, table.costs, table.uniform("w4a4"))
    assert table.truth(w4a4.assignment) >= FLOAT_METRIC - DROP
    proxy = Synthetic(table) and evaluator(table, Synthetic(table), objective="bops", drop=DROP, max_evals=None).proxy()
    assert configuration_key(w4a4.assignment) not in {configuration_key(p.assignment) for p in proxy}
    for max_evals in (None, 8, 37):
        ev, synthetic, _ = run("uniform-miss", ("drop",), max_evals=max_evals)
        answer = cheapest_within(ev, ev.floor)
        assert answer.costs["bops"] <= w4a4.costs["bops"], max_evals
        assert configuration_key(w4a4.assignment) in synthetic.calls or answer.costs["bops"] < w4a4.costs["bops"]


def test_miss_2_the_covering_measures_the_cost_axis_below_the_usable_region():
    """digits, w2a8/w4a8/w8a8 on weight bytes: at 0.3 of the 8-bit size the frontier search had
    measured only all-2-bit (0.11), where a budgeted solve finds a configuration at about 0.8."""
    table = coverage_miss_table()
    top = solvers.price(table.omega, table.costs, table.uniform("w8a8")).costs["weight_bytes"]
    budgeted = solvers.solve(table.omega, table.costs, {"weight_bytes": 0.3 * top})
    assert table.truth(budgeted.assignment) >= 0.75  # the point a --budget run finds
    ev, _, _ = run("coverage-miss", ("region", "frontier"), max_evals=None, max_points=20)  # search's default
    usable = FLOAT_METRIC * 0.9
    assert max(m for c, m in ev.known.values() if c >= 0.9 * top) >= usable  # the region was covered
    # all-2-bit measures 0.1: a configuration far better than it is measured at 0.3 of the size
    lowest = solvers.price(table.omega, table.costs, table.uniform("w2a8"))
    assert table.truth(lowest.assignment) == pytest.approx(0.1)
    assert max(m for c, m in ev.known.values() if c <= 0.3 * top) >= 0.4
    # every part of the cost axis where the proxy has optima: no gap wider than 1/max_points of it
    proxy = ev.proxy()
    costs = [p.costs["weight_bytes"] for p in proxy]
    measured = [i for i, p in enumerate(proxy) if configuration_key(p.assignment) in ev.known]
    widest = (costs[-1] - costs[0]) / ev.max_points
    assert all(costs[b] - costs[a] <= widest * (1 + 1e-9) for a, b in zip(measured, measured[1:]) if b - a > 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_drop_search_finds_a_configuration_within_it_near_the_true_optimum(seed):
    table = misjudged_table(seed)
    ev, synthetic, _ = run("misjudged", ("drop",), max_evals=40)
    table = TABLES["misjudged"][0]()
    found = cheapest_within(ev, ev.floor)
    layers = sorted(table.omega["layer"].unique())
    cost = table.costs.set_index(["layer", "candidate"])["latency_s"]
    feasible = [
        sum(cost[layer, cand] for layer, cand in zip(layers, combo))
        for combo in itertools.product(("w2a2", "w4a4", "w8a8"), repeat=len(layers))
        if table.truth(dict(zip(layers, combo))) >= FLOAT_METRIC - DROP
    ]
    bisected = bisect(
        evaluator(table, Synthetic(table), objective="latency_s", drop=DROP, max_evals=40), ev.proxy(), ev.floor
    )
    assert found.costs["latency_s"] <= bisected.costs["latency_s"]
    assert found.costs["latency_s"] <= min(feasible) * 1.25  # near the true optimum


def test_a_uniform_configuration_is_shown_outside_the_drop_by_a_more_precise_one_measured_outside():
    table = misjudged_table(0)
    ev = evaluator(table, Synthetic(table), objective="latency_s", drop=DROP, max_evals=None)
    w2a2, w4a4 = (ev.uniforms[c] for c in ("w2a2", "w4a4"))
    ev.owing = True
    assert ev.unsettled() == {"w2a2", "w4a4", "w8a8"} and not ev.shown_outside(w2a2)  # no incumbent yet
    assert ev.owed() == 2  # w4a4 first: within, w2a2 is left; outside, w8a8
    mixed = solvers.price(table.omega, table.costs, {**table.uniform("w4a4"), "l0": "w2a2"})
    ev.remember(mixed, FLOAT_METRIC - 2 * DROP)  # outside the drop, and at least as precise as w2a2 everywhere
    assert ev.shown_outside(w2a2) and not ev.shown_outside(w4a4) and ev.unsettled() == {"w4a4", "w8a8"}
    spend(ev, [])
    assert configuration_key(w2a2.assignment) not in ev.known  # shown outside, not measured


def ladder_table(rungs: int = 9) -> Table:
    """``rungs`` candidates whose precision rises with their cost, as on MiniLM (w4 < w8 < w16)."""
    rows = []
    for i in range(3):
        for bits in range(1, rungs + 1):
            rows.append((f"l{i}", f"w{bits}a{bits}", 1.0 / bits, float(bits)))
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", "bops"])
    return Table(frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", "bops"]], {})


class Outcomes(Synthetic):
    """Measures each uniform configuration within the drop or outside it, as told."""

    def __init__(self, table: Table, within: set[str]):
        super().__init__(table)
        self.within = within

    def submit(self, solution):
        (candidate,) = set(solution.assignment.values())
        metric = FLOAT_METRIC if candidate in self.within else FLOAT_METRIC - 2 * DROP

        class Pending:
            label = "point"

            def result(self):
                return metric

        return Pending()


def test_the_uniforms_are_searched_not_walked_so_a_drop_search_keeps_evaluations_for_its_strategy():
    """MiniLM at N = 20 (``mpq-refine``): nine candidates, eight uniforms cheaper than the most
    precise. Holding back one evaluation per uniform left the drop search none of its ten; a
    bisection over them needs four at worst (a uniform outside the drop shows every coarser one
    outside; one within leaves only the cheaper ones)."""
    table = ladder_table()
    highest = table.uniform("w9a9")
    ev = evaluator(table, Synthetic(table), objective="bops", drop=DROP, max_evals=10)
    ev.remember(solvers.price(table.omega, table.costs, highest), FLOAT_METRIC)
    ev.owing = True
    assert len(ev.unsettled()) == 8 and ev.owed() == 4 and ev.left == 10 - 2 - 4


@pytest.mark.parametrize("rungs", [2, 5, 9])
def test_the_uniforms_held_back_for_are_settled_whatever_each_measures(rungs):
    """Outcomes of every uniform (within the drop or outside it, even against the precision
    order; all of them up to five rungs, the ordered ones and a sample beyond): the last step
    measures no more than :meth:`Evaluator.owed` held back, and leaves no cheaper uniform
    unsettled; where precision helps, it finds the cheapest uniform within the drop."""
    table = ladder_table(rungs)
    candidates = list(dict.fromkeys(table.costs["candidate"]))
    uniforms = {c: solvers.price(table.omega, table.costs, table.uniform(c)) for c in candidates}
    every = list(itertools.product((False, True), repeat=rungs))
    if rungs > 5:
        ordered = [tuple(i >= k for i in range(rungs)) for k in range(rungs + 1)]
        every = ordered + [every[i] for i in np.random.default_rng(0).choice(len(every), 16, replace=False)]
    for within in every:
        outcomes = Outcomes(table, {c for c, inside in zip(candidates, within) if inside})
        ev = evaluator(table, outcomes, objective="bops", drop=DROP, max_evals=None, uniforms=uniforms)
        ev.owing = True
        held_back = ev.owed()
        assert held_back <= max(1, rungs.bit_length())  # a bisection: log2(rungs + 1), rounded up
        spend(ev, [])
        assert ev.spent - 1 <= held_back and not ev.unsettled()
        if list(within) == sorted(within):  # precision helps, as the search assumes: the answer is exact
            answer = cheapest_within(ev, ev.floor)
            truth = [c for c, inside in zip(candidates, within) if inside]
            assert (answer is None) == (not truth) and (not truth or answer.assignment == table.uniform(truth[0]))


def test_refinement_extends_the_measured_frontier():
    table = TABLES["misjudged"][0]()
    ev = evaluator(table, Synthetic(table), objective="latency_s", drop=None, max_evals=10)
    ev.metric(ev.proxy()[-1])
    spend(ev, ["refine"], refine=8)
    assert ev.spent == 1 + 1 + 8 + 8  # the start, refine=8, and what the named budget had left
    points = pd.DataFrame(list(ev.known.values()), columns=["latency_s", "measured_metric"])
    assert (~dominated(points, ["latency_s"]).astype(bool)).sum() >= 3  # the walk added non-dominated points


def test_default_strategy_is_one_short_rule():
    rule = dict(max_evals=None, refine=0, budgets={}, objectives=["latency_s"])
    assert default_strategy(max_drop=None, **rule) == ("region", "frontier")
    assert default_strategy(max_drop=0.01, **rule) == ("drop",)
    assert default_strategy(max_drop=None, **{**rule, "max_evals": 20}) == ("region", "refine")
    assert default_strategy(max_drop=None, **{**rule, "budgets": {"bops": 1.0}}) == ("frontier",)
    assert default_strategy(max_drop=0.01, **{**rule, "refine": 5}) == ("drop", "refine")


def test_a_user_strategy_is_a_class_with_one_method():
    class Uniforms:
        def run(self, evaluator):
            for solution in evaluator.uniforms.values():
                evaluator.metric(solution)

    ev, synthetic, _ = run("misjudged", (Uniforms(),), max_evals=None)
    assert len(synthetic.calls) == 3
    assert check_strategy([Uniforms(), "refine"], max_drop=None, max_evals=None)[1] == "refine"


@pytest.mark.parametrize(
    ("strategy", "error", "pattern"),
    [
        ("regoin", UnknownNameError, r"unknown strategy 'regoin'.*region"),
        ("drop", InvalidParameterError, r"^strategy 'drop' finds the cheapest configuration within max_drop; give"),
        ("nsga2", InvalidParameterError, r"^strategy 'nsga2' spends every evaluation it is given; give max_evals"),
        (3, InvalidParameterError, r"^The 'strategy' parameter of search must be a strategy name"),
    ],
)
def test_a_bad_strategy_is_one_line(strategy, error, pattern):
    with pytest.raises(error, match=pattern):
        check_strategy(strategy, max_drop=None, max_evals=None)


@pytest.mark.parametrize("table_name", list(TABLES))
@pytest.mark.parametrize("chain", CHAINS, ids=",".join)
def test_a_lower_is_better_metric_is_searched_as_its_mirror_image(table_name, chain):
    """Perplexity-like metrics: the strategies measure the configurations, in the order, that they
    measure for the higher-is-better metric that falls as it rises, and store it as measured."""
    up, up_calls, _ = run(table_name, chain, max_evals=budget_for(chain) or 14)
    down, down_calls, table = run(table_name, chain, max_evals=budget_for(chain) or 14, higher_is_better=False)
    assert down_calls.calls == up_calls.calls
    # scores: the negated perplexity, 2 below the mirrored metric's
    assert [x for c, m in down.known.values() for x in (c, m + 2)] == pytest.approx(
        [x for c, m in up.known.values() for x in (c, m)]
    )
    for key in down_calls.calls[:1]:  # the frontier strategy alone measures no stored pool here
        assert down.measured(down.known[key][1]) == pytest.approx(table.truth(dict(key)))  # the perplexity itself


TIES = (("l0", "l1"), ("l2", "l3", "l4"))


@pytest.mark.parametrize("table_name", ["misjudged", "coverage-miss"])
@pytest.mark.parametrize("chain", CHAINS, ids=",".join)
def test_fused_sets_share_a_candidate_in_every_configuration_measured(table_name, chain):
    ev, synthetic, _ = run(table_name, chain, max_evals=budget_for(chain) or 14, ties=TIES)
    assert synthetic.calls or chain == ("frontier",)  # which measures only a stored pool (none here)
    for key in synthetic.calls:
        assignment = dict(key)
        for group in TIES:
            assert len({assignment[layer] for layer in group}) == 1, (chain, assignment)
    assert ev.spent <= ev.max_evals
