"""A frontier users can trust: measured hypervolume and the cheapest point within a 1 % drop.

    python benchmarks/bench_frontier.py [--tasks digits-cnn/zcu104 ...] [--evals 20 50 100]
        [--methods mpq-default mpq-refine region frontier drop greedy nsga2 proxy-ilp random] [--seed 0]
        [--quick] [--check-optimum]

One run, same tasks and seeds. Every method gets at most N calls of ``task.evaluate`` (N in
``--evals``), the float model's own evaluation counted as one for every method. Probing is not
an evaluation: the sensitivity, omega and cost tables are computed once per task and shared by
the methods that use them (mpq's own searches share one store per task, so they probe once).

Methods: every strategy of ``mpq.search`` (``mpq._search.strategies``), each through
``mpq.search(..., max_evals=N)``, and two baselines outside mpq:

* ``mpq-default``: ``mpq.search(task, target, objectives=[obj], max_evals=N)``: the strategies
  ``default_strategy`` picks (``region`` then ``refine``).
* ``mpq-refine``: ``mpq.search(..., max_drop=DROP, max_evals=N - N // 2, refine=N // 2)``: the
  allowed-drop search spends half the evaluations, measured refinement the other half.
* ``region``, ``frontier``, ``drop``, ``greedy``, ``nsga2``: ``mpq.search(..., strategy=NAME,
  max_evals=N)``, with ``max_drop=DROP`` for ``drop`` and ``greedy``. ``greedy`` is AIMET's
  automatic mixed precision (AMP) as mpq builds it: each layer alone at each cheaper candidate
  (all-highest elsewhere), then the changes by measured drop per cost saved, the longest prefix
  within the drop by bisection; a small N cuts phase 1 short.
* ``proxy-ilp`` (today's frontier): ``solvers.frontier(omega, costs, [obj], max_points=200)``
  (the exact frontier when it has at most 200 points, else the optima at 200 evenly spaced
  budgets); all of it is evaluated when it has at most N - 1 points, else N - 1 points spread
  evenly over it (both ends included).
* ``random``: uniformly random candidates per layer (seeded; among the candidates the target
  runs for that layer), N - 1 of them.

Measured hypervolume: every configuration a method evaluated gives a point (cost on the
objective, measured metric). The reference box per task is cost in [all-lowest, all-highest]
(the sums of each layer's cheapest and most expensive candidate) by metric in [float - SPAN,
float] with SPAN = 10 x the allowed drop = 0.1: the region a user who allows a 1 % drop would
look at, ten times over. Metrics above the float metric count as the float metric; points below
the reference metric count nothing. The hypervolume (area dominated by the points inside the
box: cost minimised, metric maximised) is divided by the box's area, so 1 would be a
configuration at the float metric for the all-lowest cost, and 0 nothing better than the box.
The cheapest configuration within the drop is the cheapest evaluated one with metric >= float
- 0.01; ``rel`` is its cost over all-highest's.

Tasks: ``digits-cnn/zcu104`` (accuracy against latency_s on the FINN-style FPGA, 4 INT
candidates, w2a2 collapses the model), ``minilm-small/h100-sxm`` (cosine against weight bytes,
39 layers, 9 INT/FP/MX candidates) and the third, ``digits-cnn/pynq-z1`` (latency_s on the
smaller Zynq): it loads in a second (same cached model) and its cost landscape is unlike the
other two: conv1 costs 92 us at every candidate (half the total, fixed), and w4a8 is no faster
than w8a8 in five of six layers, so most of the objective cannot be bought down and methods that
spend evaluations on changes that save nothing, or that trust bit widths as costs, pay for it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import itertools
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
import hwmodels  # noqa: E402
import mpq  # noqa: E402
import solvers  # noqa: E402

DROP = 0.01  # the allowed drop below the float model's metric, in metric units
SPAN = 10 * DROP  # the hypervolume box's metric height below the float metric
EXHAUSTIVE_LIMIT = 5000  # design spaces --check-optimum measures exhaustively (digits: 4^6 = 4096)


@dataclasses.dataclass(frozen=True)
class TaskSpec:
    example: str
    target: str
    objective: str


TASKS = {
    "digits-cnn/zcu104": TaskSpec("digits-cnn", "zcu104", "latency_s"),
    "minilm-small/h100-sxm": TaskSpec("minilm-small", "h100-sxm", "weight_bytes"),
    "digits-cnn/pynq-z1": TaskSpec("digits-cnn", "pynq-z1", "latency_s"),
}
#: mpq.search's keywords of each of its methods, at N evaluations.
MPQ_METHODS: dict[str, Callable[[int], dict]] = {
    "mpq-default": lambda n: {"max_evals": n},
    "mpq-refine": lambda n: {"max_drop": DROP, "max_evals": n - n // 2, "refine": n // 2},
    "region": lambda n: {"strategy": "region", "max_evals": n},
    "frontier": lambda n: {"strategy": "frontier", "max_evals": n},
    "drop": lambda n: {"strategy": "drop", "max_drop": DROP, "max_evals": n},
    "greedy": lambda n: {"strategy": "greedy", "max_drop": DROP, "max_evals": n},
    "nsga2": lambda n: {"strategy": "nsga2", "max_evals": n},
}
METHODS = (*MPQ_METHODS, "proxy-ilp", "random")
MPQ_KEYWORDS = ("max_evals", "max_drop", "refine", "strategy")


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BudgetSpent(Exception):
    """A method asked for an evaluation beyond its cap."""


@dataclasses.dataclass
class Setup:
    """What every method of one task shares: tables computed once, the float metric, a cache.

    ``cache`` maps a configuration to its measured metric, so a configuration two methods (or
    two caps) evaluate is measured once; every method is still charged for it.
    """

    name: str
    spec: TaskSpec
    task: mpq.Task
    layer_names: list[str]
    costs: pd.DataFrame  # layer, candidate and the cost columns the target reports
    omega: pd.DataFrame | None
    act_ranges: Mapping[str, float]
    float_metric: float
    cache: dict = dataclasses.field(default_factory=dict)
    evaluate_calls: int = 0

    def __post_init__(self) -> None:
        objective = self.spec.objective
        self.cost = dict(zip(zip(self.costs["layer"], self.costs["candidate"]), self.costs[objective].astype(float)))
        # Most expensive first; equal costs (fc2 on the FPGAs) from the most bits down, so that
        # "the highest candidate" is the most precise of the most expensive ones.
        names = list(dict.fromkeys(self.costs["candidate"]))
        bits = mpq.candidate_table(names)[["candidate", "weight_bits", "act_bits"]]
        ordered = self.costs.merge(bits, on="candidate").sort_values(
            [objective, "weight_bits", "act_bits"], ascending=False, kind="stable"
        )
        self._options = {layer: list(ordered.loc[ordered["layer"] == layer, "candidate"]) for layer in self.layer_names}

    def options(self, layer: str) -> list[str]:
        """The candidates the target runs for ``layer``, most expensive on the objective (then most bits) first."""
        return self._options[layer]

    def highest(self) -> dict[str, str]:
        return {layer: self.options(layer)[0] for layer in self.layer_names}

    def lowest(self) -> dict[str, str]:
        return {layer: self.options(layer)[-1] for layer in self.layer_names}

    def total_cost(self, assignment: Mapping[str, str]) -> float:
        return float(sum(self.cost[layer, candidate] for layer, candidate in assignment.items()))

    def measure(self, assignment: Mapping[str, str]) -> float:
        key = tuple(sorted(assignment.items()))
        if key not in self.cache:
            self.evaluate_calls += 1
            metrics = mpq.validate(self.task, {"point": dict(assignment)}, act_ranges=self.act_ranges)
            self.cache[key] = float(metrics["point"])
        return self.cache[key]


def prepare(name: str, spec: TaskSpec, task: mpq.Task, *, need_omega: bool) -> Setup:
    """Layers, costs, probe and omega of one task, computed once; the float metric measured once."""
    device = hwmodels.load_device(spec.target)
    layer_table = mpq.layers(task.model, task.calibration[0][0])
    costs = hwmodels.cost_table(layer_table, device, mpq.candidate_table(device.candidates))
    om = None
    if need_omega:
        start = time.perf_counter()
        note(f"[{name}] probing and omega (shared by the methods that read them, not an evaluation)")
        sensitivity = mpq.probe(task, settings=mpq.ProbeSettings(), layer_table=layer_table)
        om = mpq.omega(task, sensitivity, device.candidates, layer_table=layer_table)
        note(f"[{name}] probe and omega: {time.perf_counter() - start:.1f} s")
    act_ranges = mpq.activation_ranges(task.model, task.calibration)
    float_metric = float(task.evaluate(task.model))
    return Setup(name, spec, task, list(layer_table["layer"]), costs, om, act_ranges, float_metric)


class Ledger:
    """The evaluations one method spends under a cap of N: counted, capped and recorded.

    The float model's evaluation is charged at creation (its metric comes from the setup).
    """

    def __init__(self, setup: Setup, cap: int, label: str = "") -> None:
        self.setup, self.cap, self.label = setup, cap, label
        self.spent = 1
        self.points: list[tuple[float, float, dict[str, str]]] = []  # (cost, metric, assignment)

    @property
    def left(self) -> int:
        return self.cap - self.spent

    def measure(self, assignment: Mapping[str, str]) -> float:
        if self.spent >= self.cap:
            raise BudgetSpent(f"{self.label}: evaluation {self.spent + 1} asked for, the cap is {self.cap}")
        self.spent += 1
        metric = self.setup.measure(assignment)
        self.points.append((self.setup.total_cost(assignment), metric, dict(assignment)))
        if self.label and (self.spent % 10 == 0 or self.spent == self.cap):
            note(f"  {self.label}: {self.spent}/{self.cap} evaluations")
        return metric


# ---- methods that run on the shared tables ------------------------------------------------------


def run_random(setup: Setup, ledger: Ledger, seed: int) -> None:
    rng = np.random.default_rng(seed)
    options = {layer: setup.options(layer) for layer in setup.layer_names}
    while ledger.left > 0:
        ledger.measure({layer: options[layer][rng.integers(len(options[layer]))] for layer in setup.layer_names})


def run_proxy_ilp(setup: Setup, ledger: Ledger, seed: int) -> None:
    objective = setup.spec.objective
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
        points = solvers.frontier(setup.omega, setup.costs, [objective], max_points=max(200, ledger.left))
    points = sorted(points, key=lambda p: -p.costs[objective])
    if len(points) > ledger.left:  # evenly spread over the frontier, its two ends included
        points = [points[i] for i in np.unique(np.linspace(0, len(points) - 1, ledger.left).round().astype(int))]
    for point in points:
        ledger.measure(point.assignment)


# ---- mpq's own searches -------------------------------------------------------------------------


def mpq_has_keywords() -> bool:
    parameters = inspect.signature(mpq.search).parameters
    return all(k in parameters for k in MPQ_KEYWORDS)


def run_mpq(setup: Setup, cap: int, db: Path, *, method: str, label: str) -> tuple[list[tuple[float, float]], int, str]:
    """One ``mpq.search`` of ``method`` at ``cap`` evaluations: its measured points, the evaluate calls, and notes.

    The notes flag a search over its cap, and a ``run.record["evaluations"]`` or a
    ``run.best(max_drop=...)`` that disagrees with what was counted and measured here.
    """
    calls = 0
    evaluate = setup.task.evaluate

    def counted(model: torch.nn.Module) -> float:
        nonlocal calls
        calls += 1
        if calls % 10 == 0:
            note(f"  {label}: {calls} evaluations")
        return evaluate(model)

    task = dataclasses.replace(setup.task, evaluate=counted)
    spec = setup.spec
    run = mpq.search(task, target=spec.target, objectives=[spec.objective], db=db, **MPQ_METHODS[method](cap))
    frontier = run.frontier[run.frontier["measured_metric"].notna()]
    points = list(zip(frontier[spec.objective].astype(float), frontier["measured_metric"].astype(float)))
    notes = [f"over the cap: {calls} > {cap}"] if calls > cap else []
    recorded = getattr(run, "record", {}).get("evaluations")
    if recorded != calls:
        notes.append(f"run.record['evaluations'] = {recorded}, counted {calls}")
    cheapest = cheapest_within(points, setup.float_metric - DROP)
    try:
        best = float(run.best(max_drop=DROP)[spec.objective])
    except Exception as exc:  # noqa: BLE001 - reported, not fatal: the table is what this measures
        best = f"{type(exc).__name__}: {exc}".splitlines()[0]
    if not (best == cheapest or (cheapest is not None and isinstance(best, float) and math.isclose(best, cheapest))):
        notes.append(f"run.best(max_drop={DROP}) gives {best}")
    return points, calls, "; ".join(notes)


# ---- scores -------------------------------------------------------------------------------------


def hypervolume(points: Sequence[tuple[float, float]], box: tuple[float, float, float, float]) -> float:
    """Normalised area dominated by (cost, metric) points in the box (cost minimised, metric maximised)."""
    cost_low, cost_high, metric_low, metric_high = box
    inside = sorted((max(c, cost_low), min(m, metric_high)) for c, m in points if c <= cost_high and m > metric_low)
    area, best = 0.0, metric_low
    for i, (c, m) in enumerate(inside):  # sweep by cost: each point raises the staircase to its right
        best = max(best, m)
        right = inside[i + 1][0] if i + 1 < len(inside) else cost_high
        area += (right - c) * (best - metric_low)
    return area / ((cost_high - cost_low) * (metric_high - metric_low))


def cheapest_within(points: Sequence[tuple[float, float]], threshold: float) -> float | None:
    within = [c for c, m in points if m >= threshold - 1e-9]
    return min(within) if within else None


@dataclasses.dataclass
class Row:
    method: str
    cap: int
    evaluations: int | None
    hv: float | None
    cheapest: float | None
    note: str = ""


def check_optimum(setup: Setup, cheapest: float, threshold: float) -> None:
    """Measure every configuration cheaper than ``cheapest`` (small design spaces only) and say
    whether any is within the drop: a tie at ``cheapest`` is then a tie at the optimum."""
    options = [setup.options(layer) for layer in setup.layer_names]
    space = math.prod(len(o) for o in options)
    if space > EXHAUSTIVE_LIMIT:
        print(f"optimum check: skipped, {space} configurations (more than {EXHAUSTIVE_LIMIT})")
        return
    every = (dict(zip(setup.layer_names, c)) for c in itertools.product(*options))
    cheaper = [a for a in every if setup.total_cost(a) < cheapest * (1 - 1e-9)]
    note(f"[{setup.name}] optimum check: measuring the {len(cheaper)} configurations cheaper than {cheapest:.4g}")
    best = max(((setup.measure(a), setup.total_cost(a)) for a in cheaper), default=None)
    verdict = "none is" if best is None or best[0] < threshold - 1e-9 else "ONE IS"
    print(
        f"optimum check: {len(cheaper)} of the {space} configurations cost less than {cheapest:.4g}; {verdict} "
        f"within the drop" + ("" if best is None else f" (the most accurate of them: {best[0]:.4f} at {best[1]:.4g})")
    )


def bench_task(
    name: str, methods: Sequence[str], caps: Sequence[int], seed: int, folder: Path, optimum: bool = False
) -> None:
    spec = TASKS[name]
    start = time.perf_counter()
    task = mpq.load_task(f"example:{spec.example}")
    note(f"[{name}] load_task {time.perf_counter() - start:.1f} s")
    setup = prepare(name, spec, task, need_omega="proxy-ilp" in methods)
    cost_high = setup.total_cost(setup.highest())
    cost_low = setup.total_cost(setup.lowest())
    box = (cost_low, cost_high, setup.float_metric - SPAN, setup.float_metric)
    threshold = setup.float_metric - DROP
    runners: dict[str, Callable] = {"proxy-ilp": run_proxy_ilp, "random": run_random}
    rows = []
    with_keywords = mpq_has_keywords()
    for method in methods:
        for cap in caps:
            label = f"[{name}] {method} N={cap}"
            note(f"{label}: start")
            if method in runners:
                ledger = Ledger(setup, cap, label)
                runners[method](setup, ledger, seed)
                points = [(c, m) for c, m, _ in ledger.points]
                rows.append(
                    Row(method, cap, ledger.spent, hypervolume(points, box), cheapest_within(points, threshold))
                )
            elif not with_keywords:
                rows.append(Row(method, cap, None, None, None, "skipped: mpq.search lacks " + "/".join(MPQ_KEYWORDS)))
            else:
                points, calls, notes = run_mpq(
                    setup, cap, folder / f"{name.replace('/', '_')}.db", method=method, label=label
                )
                rows.append(
                    Row(method, cap, calls, hypervolume(points, box), cheapest_within(points, threshold), notes)
                )
    print_table(setup, rows, box, cost_high)
    found = [r.cheapest for r in rows if r.cheapest is not None]
    if optimum and found:
        check_optimum(setup, min(found), threshold)


def print_table(setup: Setup, rows: Sequence[Row], box: tuple[float, float, float, float], cost_high: float) -> None:
    spec, metric = setup.spec, setup.task.metric_name
    print(
        f"\n{setup.name}: {metric} against {spec.objective}; float {metric} {setup.float_metric:.4f}, "
        f"within the drop: >= {setup.float_metric - DROP:.4f}; "
        f"hypervolume box {spec.objective} [{box[0]:.4g}, {box[1]:.4g}] x "
        f"{metric} [{box[2]:.4f}, {box[3]:.4f}]; all-highest costs {cost_high:.4g}; proxy-ilp and random "
        f"measured {setup.evaluate_calls} distinct configurations between them"
    )
    print(f"{'method':<12} {'N':>4} {'evals':>5} {'hypervolume':>11} {'cheapest':>10} {'rel':>6}  note")
    for r in rows:
        evals = "-" if r.evaluations is None else str(r.evaluations)
        hv = "-" if r.hv is None else f"{r.hv:.4f}"
        cheapest = "-" if r.cheapest is None else f"{r.cheapest:.4g}"
        rel = "-" if r.cheapest is None else f"{r.cheapest / cost_high:.3f}"
        if r.hv is not None and r.cheapest is None:
            cheapest, rel = "none", "-"
        print(f"{r.method:<12} {r.cap:>4} {evals:>5} {hv:>11} {cheapest:>10} {rel:>6}  {r.note}")
    for mine in ("mpq-default",):
        verdict = []
        for cap in sorted({r.cap for r in rows}):
            at = {r.method: r for r in rows if r.cap == cap and r.hv is not None}
            if mine not in at or len(at) < 2:
                continue
            if at[mine].evaluations > cap:
                verdict.append(f"N={cap}: OVER THE CAP ({at[mine].evaluations} evaluations)")
                continue
            others = [r for m, r in at.items() if m != mine]
            # Another strategy of mpq's measuring the same configurations ties, to the printed digits.
            hv = round(at[mine].hv, 4)
            hv_verdict = (
                "ahead"
                if all(hv > round(r.hv, 4) for r in others)
                else "ahead or tied"
                if all(hv >= round(r.hv, 4) for r in others)
                else "BEHIND"
            )
            inf = float("inf")
            mine_cost = at[mine].cheapest if at[mine].cheapest is not None else inf
            cost_ahead = all(mine_cost <= (r.cheapest if r.cheapest is not None else inf) for r in others)
            verdict.append(f"N={cap}: hypervolume {hv_verdict}, cheapest {'ahead or tied' if cost_ahead else 'BEHIND'}")
        if verdict:
            print(f"{mine} against every other method: " + "; ".join(verdict))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="+", choices=list(TASKS), default=list(TASKS))
    parser.add_argument("--evals", nargs="+", type=int, default=[20, 50, 100])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 8 and 12 evaluations")
    parser.add_argument(
        "--check-optimum",
        action="store_true",
        help=f"on tasks of at most {EXHAUSTIVE_LIMIT} configurations, measure every one cheaper than the "
        "cheapest found within the drop",
    )
    args = parser.parse_args()
    if args.quick:
        args.evals = [8, 12]
    if min(args.evals) < 2:
        parser.error("--evals: every count must be at least 2 (the float model is one)")
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    if not mpq_has_keywords() and any(m in MPQ_METHODS for m in args.methods):
        print(f"note: mpq.search does not take {', '.join(MPQ_KEYWORDS)} yet; the mpq rows are skipped.")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for name in args.tasks:
            bench_task(name, args.methods, sorted(args.evals), args.seed, Path(folder), args.check_optimum)
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"\nload average {load}; torch threads {torch.get_num_threads()}; seed {args.seed}; "
        f"wall {time.perf_counter() - start:.0f} s"
    )


if __name__ == "__main__":
    main()
