"""The :class:`Evaluator`: every measured evaluation of a search goes through it.

A strategy (``mpq._search.strategies``) decides which configurations to measure; the evaluator
measures each at most once, within the run's evaluation budget, starts the next ones early on
an executor, replays what an interrupted run measured before, and hands each new measurement
to the one callback that stores it. It never touches the store itself.

Strategies see every metric as a score where higher is better: the metric itself, or its
negative for a task whose metric is lower-is-better (a perplexity). The recorder and the store
get the metric as measured; :meth:`Evaluator.measured` turns a score back into it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Protocol

import pandas as pd

import solvers
from mpq._measured_frontier import configuration_key
from mpq._search.uniform_search import UniformSearch

#: Evaluations a search with ``max_drop`` spends when ``max_evals`` is not given.
DEFAULT_DROP_EVALS = 50
#: ``max_evals`` of a search that names none and has no drop: its strategies stop on their own.
UNBOUNDED = 10**9


class Pending(Protocol):
    """An evaluation started on an executor (``mpq._executors.Handle``)."""

    label: str

    def result(self) -> float: ...

    def cancel(self) -> None: ...


class Recorder(Protocol):
    """Where the evaluator reports and stores measurements (the search's pipeline)."""

    def starting(self, solution: solvers.Solution, spent: int) -> str:
        """Report that ``solution`` is measured now; returns its label for worker errors."""

    def record(self, solution: solvers.Solution, metric: float) -> None:
        """Store a new measurement (once per configuration, in the order measured)."""


@dataclass
class Evaluator:
    """Measured evaluations of one search, bounded and remembered; what strategies see.

    Args:
        omega: The run's omega table.
        costs: The run's cost table.
        objective: The cost column the search makes cheap (the first objective).
        budgets: Limits every configuration meets (the device's capacities, the user's budgets).
        float_metric: The float model's measured metric (held as a score from then on, like
            ``known``).
        drop: The allowed drop in metric units (a rise of a lower-is-better metric), or None
            when the search was given none.
        max_points: The run's ``max_points`` (how many points a covering measures).
        max_evals: Evaluations this search may spend in all, the float model's included.
        spent: Evaluations spent before (the float model's, configurations measured before).
        submit: ``submit(solution) -> Pending``: starts one evaluation (on the executor).
        recorder: Reports and stores each new measurement.
        proxy: ``proxy() -> [Solution]``: the dense frontier of predicted loss, ascending cost
            (solved, or read back from the store, the first time it is asked for).
        pool: Configurations stored before any was measured (the solver's frontier points,
            the uniform baselines), in the order they are to be measured.
        uniforms: Every uniform configuration within the budgets, candidate -> its solution.
        known: Configuration -> (objective cost, score) measured; nothing is measured twice.
        replay: Configuration -> metric measured by this search before it was interrupted. A
            resumed search runs its strategies again from the start: a configuration found here
            is taken from here, not measured again, but counts as spent when it is asked for, as
            it did then; so the resumed search makes the choices, and spends the evaluations,
            of one never interrupted (with ``known``, it would begin knowing what it measured
            later, and choose otherwise).
        width: Evaluations that can run at once (an executor's workers); see :meth:`ahead`.
        budget_named: Whether the user named ``max_evals`` (then it is spent whole, by refinement).
        higher_is_better: Whether the task's metric improves upwards; False: the evaluator's
            scores are its negatives.
        ties: Groups of layers that share one candidate in every configuration (fused sets):
            :meth:`move` moves a whole group, and :meth:`price` refuses a configuration that
            splits one.
        bits: Candidate -> (weight bits, activation bits) per value; where given, a uniform
            configuration is shown outside the drop by a measured configuration at least as
            precise on every layer that measured outside it (the assumption local repair makes:
            a coarser candidate is no better).
        owing: Whether the evaluations :meth:`owed` are held back from :attr:`left` (while the
            strategies of a search given a drop run).
    """

    omega: pd.DataFrame
    costs: pd.DataFrame
    objective: str
    budgets: Mapping[str, float]
    float_metric: float
    drop: float | None
    max_points: int
    max_evals: int
    spent: int
    submit: Callable[[solvers.Solution], Pending]
    recorder: Recorder
    proxy: Callable[[], list[solvers.Solution]]
    pool: Sequence[solvers.Solution] = ()
    uniforms: Mapping[str, solvers.Solution] = field(default_factory=dict)
    known: dict[tuple, tuple[float, float]] = field(default_factory=dict)
    replay: dict[tuple, float] = field(default_factory=dict)
    width: int = 1
    budget_named: bool = False
    bits: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    owing: bool = False
    higher_is_better: bool = True
    ties: Sequence[Sequence[str]] = ()
    _started: dict[tuple, Pending] = field(default_factory=dict, repr=False)
    _owed: tuple[int, int] = (-1, 0)  # (len(known) it was counted at, the count): known only grows

    def __post_init__(self) -> None:
        self.float_metric = self.score(self.float_metric)
        self._group = {layer: tuple(group) for group in self.ties for layer in group}
        self._omega = self.omega.set_index(["layer", "candidate"])["omega"]
        self._cost = self.costs.set_index(["layer", "candidate"])[self.objective]
        self.offered: dict[str, list[str]] = self.costs.groupby("layer", sort=False)["candidate"].apply(list).to_dict()
        self.uniform_search = UniformSearch(
            {label: u.costs[self.objective] for label, u in self.uniforms.items()}, self._covers
        )

    def _covers(self, label: str, other: str) -> bool:
        """Whether uniform ``label`` is at least as precise as uniform ``other`` (by :attr:`bits`)."""
        if not self.bits:
            return label == other
        (mine,), (theirs,) = (set(self.uniforms[v].assignment.values()) for v in (label, other))
        return self.bits[mine][0] >= self.bits[theirs][0] and self.bits[mine][1] >= self.bits[theirs][1]

    def score(self, metric: float) -> float:
        """A measured metric as the score strategies compare (higher is better)."""
        return metric if self.higher_is_better else -metric

    def measured(self, score: float) -> float:
        """The metric a score stands for (the inverse of :meth:`score`)."""
        return score if self.higher_is_better else -score

    def group(self, layer: str) -> tuple[str, ...]:
        """The layers that move with ``layer``: its fused set, or itself alone."""
        return self._group.get(layer, (layer,))

    def move(self, assignment: Mapping[str, str], layer: str, candidate: str) -> dict[str, str]:
        """``assignment`` with ``layer`` (and every layer of its fused set) at ``candidate``."""
        return {**assignment, **dict.fromkeys(self.group(layer), candidate)}

    @property
    def floor(self) -> float | None:
        """The least metric within the allowed drop; None without a drop."""
        return None if self.drop is None else self.float_metric - self.drop

    @property
    def left(self) -> int:
        """Evaluations the strategies may still spend."""
        return self.max_evals - self.spent - (self.owed() if self.owing else 0)

    @contextmanager
    def at_most(self, count: int | None) -> Iterator[None]:
        """Within the block, at most ``count`` more evaluations (None: no other limit than the
        search's): what a strategy spends on its own share."""
        saved = self.max_evals
        if count is not None:
            self.max_evals = min(saved, self.spent + count)
        try:
            yield
        finally:
            self.max_evals = saved

    def owed(self) -> int:
        """The evaluations a search given a drop holds back for its uniform configurations: the
        most that settling those still unsettled (:meth:`unsettled`) can take, measured in the
        order :class:`UniformSearch` picks. It shrinks as the strategies find cheaper incumbents
        and measure configurations outside the drop, so the evaluations it holds back are the
        ones the guarantee may need, no more."""
        if self.floor is None:
            return 0
        if self._owed[0] != len(self.known):
            self._owed = (len(self.known), self.uniform_search.reserve(self.unsettled()))
        return self._owed[1]

    def unsettled(self) -> frozenset[str]:
        """The uniform configurations (labels) not measured yet, nor shown outside the drop, that
        cost less than the incumbent (the cheapest measured within the drop; every one while
        there is none)."""
        within = [cost for cost, metric in self.known.values() if metric >= self.floor]
        incumbent = min(within, default=float("inf"))
        return frozenset(
            label
            for label, u in self.uniforms.items()
            if configuration_key(u.assignment) not in self.known
            and u.costs[self.objective] < incumbent
            and not self.shown_outside(u)
        )

    def shown_outside(self, solution: solvers.Solution) -> bool:
        """Whether a configuration measured outside the drop is at least as precise as
        ``solution`` on every layer (by :attr:`bits`): then ``solution`` is taken to be outside too."""
        if self.floor is None or not self.bits:
            return False
        needed = {layer: self.bits[candidate] for layer, candidate in solution.assignment.items()}
        for key, (_, metric) in self.known.items():
            if metric < self.floor and all(
                self.bits[c][0] >= needed[layer][0] and self.bits[c][1] >= needed[layer][1] for layer, c in key
            ):
                return True
        return False

    def cost(self, layer: str, candidate: str) -> float:
        """One layer's cost on the objective at ``candidate``."""
        return float(self._cost[layer, candidate])

    def omega_of(self, layer: str, candidate: str) -> float:
        """One layer's predicted loss increase at ``candidate``."""
        return float(self._omega[layer, candidate])

    def remember(self, solution: solvers.Solution, metric: float) -> None:
        """A measurement made before the search began (each distinct one counts as one evaluation)."""
        key = configuration_key(solution.assignment)
        if key not in self.known:
            self.known[key] = (solution.costs[self.objective], self.score(metric))
            self.spent += 1

    def metric(self, solution: solvers.Solution) -> float | None:
        """The score (:meth:`score`) of a configuration's measured metric: remembered, replayed,
        measured now, or None when no evaluation is left."""
        key = configuration_key(solution.assignment)
        if key not in self.known:
            if self.left <= 0:
                return None
            if key in self.replay:
                value = self.replay.pop(key)
            else:
                label = self.recorder.starting(solution, self.spent)
                pending = self._started.pop(key, None) or self.submit(solution)
                pending.label = label  # started ahead, it had no point number yet
                value = float(pending.result())
                self.recorder.record(solution, value)
            self.known[key] = (solution.costs[self.objective], self.score(value))
            self.spent += 1
        return self.known[key][1]

    def price(self, assignment: Mapping[str, str]) -> solvers.Solution | None:
        """A configuration's predicted loss and costs; None when it breaks a budget or splits a fused set."""
        if any(len({assignment[layer] for layer in group}) > 1 for group in self.ties):
            return None
        solution = solvers.price(self.omega, self.costs, assignment)
        within = all(solution.costs.get(name, 0.0) <= limit * (1 + 1e-9) for name, limit in self.budgets.items())
        return solution if within else None

    def ahead(self, now: solvers.Solution, likely: Sequence[solvers.Solution], count: int | None = None) -> None:
        """Have ``now`` and at most ``count`` (default ``width - 1``) of ``likely`` running on the
        executor: those not measured, to measure or to replay. Evaluations started before that
        are no longer among them are cancelled (once running, their results are dropped). What
        is measured, and in which order, stays what one evaluation at a time measures."""
        if self.width <= 1 and count is None:
            return
        count = self.width - 1 if count is None else count
        fresh = [s for s in likely if configuration_key(s.assignment) not in self.known]
        wanted = {}
        for solution in [now, *fresh[: max(min(count, self.left - 1), 0)]]:
            key = configuration_key(solution.assignment)
            if key not in self.known and key not in self.replay:
                wanted[key] = solution
        for key in [k for k in self._started if k not in wanted]:
            self._started.pop(key).cancel()
        for key, solution in wanted.items():
            if key not in self._started:
                self._started[key] = self.submit(solution)

    def settle(self) -> None:
        """Cancel every evaluation started ahead that no strategy took (after each strategy): the executor is left idle."""
        for pending in self._started.values():
            pending.cancel()
        self._started = {}
