"""The store's side of a search's measurements: the points they become, and what a resumed run
measured before (:class:`Measurements`, the :class:`~mpq._search.evaluator.Recorder` of a run)."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping, Sequence

import pandas as pd

import solvers
from mpq._measured_frontier import configuration_key, spread
from mpq._search.evaluator import Evaluator
from mpq._search.plan import Plan, Progress
from mpq._storage import Store

#: The label of the point measured before a ``max_drop`` run began (its most precise configuration).
MEASURED_BEFORE_RUN = "highest"
#: Points of the proxy frontier the bisections search over.
PROXY_POINTS = 200


def point_rows(
    labelled: Sequence[tuple[str, bool, solvers.Solution]], *, first: int, measured: Sequence[float] | None = None
) -> list[dict]:
    """Store rows of (label, is_baseline, solution), numbered from ``first``."""
    return [
        {
            "point": first + i,
            "label": label,
            "is_baseline": is_baseline,
            "optimal": solution.optimal,
            "predicted_loss": solution.predicted_loss,
            "costs": solution.costs,
            "measured_metric": None if measured is None else measured[i],
            "assignment": solution.assignment,
        }
        for i, (label, is_baseline, solution) in enumerate(labelled)
    ]


def validation_order(frontier: pd.DataFrame, objective: str) -> pd.DataFrame:
    """The stored points in the order they are measured: the frontier's in an order that covers
    it evenly, then the baselines (the run table ``validation_order``, fixed when they are stored)."""
    proxy = frontier[~frontier["is_baseline"]].sort_values(objective)
    order = [int(proxy["point"].iloc[i]) for i in spread(len(proxy))]
    order += [int(point) for point in frontier.loc[frontier["is_baseline"], "point"]]
    return pd.DataFrame({"point": order}, dtype=int)


class Measurements:
    """One run's measurements as stored points: each new configuration measured becomes a point
    (or fills the stored points of that configuration), in one transaction.

    Args:
        store: The store.
        run_id: The run.
        om: The run's omega table.
        plan: The run's plan.
        tables: The run's tables stored before this process took it up (a resumed run's ``proxy``...).
        progress: The search's progress callback.
    """

    def __init__(
        self,
        store: Store,
        run_id: int,
        om: pd.DataFrame,
        plan: Plan,
        tables: Mapping[str, pd.DataFrame],
        progress: Progress,
    ):
        self.store, self.run_id, self.om, self.plan, self.progress = store, run_id, om, plan, progress
        self.objective = plan.objectives[0]
        self._tables = tables
        frontier, assignments = store.run_points(run_id)
        self._by_point = {p: dict(rows[["layer", "candidate"]].values) for p, rows in assignments.groupby("point")}
        self._optimal = dict(zip(frontier.get("point", []), frontier.get("optimal", [])))
        measured = frontier[frontier["measured_metric"].notna()] if len(frontier) else frontier
        #: What the run measured before this process took it up: replayed, as it was measured.
        self.replay: dict[tuple, float] = {}
        #: Measured before the run began (known from the start, as it was then): (assignment, metric).
        self.before: list[tuple[dict[str, str], float]] = []
        for point, label, metric in zip(
            measured.get("point", []), measured.get("label", []), measured.get("measured_metric", [])
        ):
            if label == MEASURED_BEFORE_RUN:
                self.before.append((self._by_point[point], float(metric)))
            else:
                self.replay[configuration_key(self._by_point[point])] = float(metric)
        measured_points = set(measured.get("point", []))
        # Stored points not measured yet get their configuration's measurement (a configuration
        # may be stored twice: a frontier point and a baseline); any other one becomes a point.
        self._stored: dict[tuple, list[tuple[int, str]]] = {}
        for point, label in zip(frontier.get("point", []), frontier.get("label", [])):
            if point not in measured_points:
                self._stored.setdefault(configuration_key(self._by_point[point]), []).append((int(point), label))
        self._proxy_points: list[solvers.Solution] = []
        self._proxy_keys: set[tuple] = set()  # measured and added as "frontier" points; others as "search"
        # Read once here, kept up to date by _add_point: no store read per evaluation.
        self._next_point = int(frontier["point"].max()) + 1 if len(frontier) else 0
        self._baselines = int(frontier["is_baseline"].sum()) if len(frontier) else 0
        self.planned = 0  # set by the pipeline once the evaluator's budget is known

    def pool(self, order: pd.DataFrame | None) -> list[solvers.Solution]:
        """The configurations stored before any was measured, in their validation ``order``."""
        if order is None:
            return []
        return [
            dataclasses.replace(
                solvers.price(self.om, self.plan.costs, self._by_point[int(point)]),
                optimal=bool(self._optimal[int(point)]),
            )
            for point in order["point"]
        ]

    def starting(self, solution: solvers.Solution, spent: int) -> str:
        key = configuration_key(solution.assignment)
        stored = self._stored.get(key, [])
        self.progress("validate", spent - 1, self.planned, self._label(key, stored)[0])
        return f"point {stored[0][0] if stored else self._next_point}"

    def record(self, solution: solvers.Solution, metric: float) -> None:
        key = configuration_key(solution.assignment)
        stored = self._stored.pop(key, [])
        on_stored = {stored_point: metric for stored_point, _ in stored}
        if not stored or key in self._proxy_keys:
            label, is_baseline = self._label(key, stored)
            self._add_point(label, is_baseline, solution, metric, on_stored)
        else:
            self.store.set_measured(self.run_id, on_stored)

    def _label(self, key: tuple, stored: Sequence[tuple[int, str]]) -> tuple[str, bool]:
        """A measured configuration's label: an optimum of the proxy is a frontier point of its
        own, even where a baseline is the same configuration; a uniform one is a baseline."""
        if key in self._proxy_keys:
            return "frontier", False
        if stored:
            return stored[0][1], False
        candidates = {candidate for _, candidate in key}
        return (f"all-{candidates.pop()}", True) if len(candidates) == 1 else ("search", False)

    def add_before(self, evaluator: Evaluator, assignment: Mapping[str, str], metric: float) -> None:
        """Store a configuration measured before the run was created, as a point of its own."""
        if configuration_key(assignment) in evaluator.known:
            return
        solution = solvers.price(self.om, self.plan.costs, assignment)
        self._add_point(MEASURED_BEFORE_RUN, False, solution, metric)
        evaluator.remember(solution, metric)

    def _add_point(
        self,
        label: str,
        is_baseline: bool,
        solution: solvers.Solution,
        metric: float,
        on_stored: Mapping[int, float] | None = None,
    ) -> None:
        """Store a measured configuration as a new point, and its metric on the stored points of
        the same configuration (``on_stored``), in one transaction: a process killed between the
        two would resume with the configuration known and never add the point."""
        rows = point_rows([(label, is_baseline, solution)], first=self._next_point, measured=[metric])
        self.store.add_points(self.run_id, rows, measured=on_stored)
        self._next_point += 1

    def fill_known(self, known: Mapping[tuple, tuple[float, float]]) -> None:
        """Give the stored points still unmeasured whose configuration was measured elsewhere (as
        another point, or before a resume) that measurement."""
        filled = {point: metric for key, (_, metric) in known.items() for point, _ in self._stored.pop(key, [])}
        if filled:
            self.store.set_measured(self.run_id, filled)

    def planned_for(self, evaluator: Evaluator) -> int:
        """Configurations this run plans to measure (beside the float model), for progress."""
        s = self.plan.settings
        if s.max_evals is not None or s.max_drop is not None:
            return evaluator.max_evals - 1
        return s.max_points + self._baselines + s.refine  # a covering's bisection is within max_points

    def proxy(self) -> list[solvers.Solution]:
        """The proxy frontier (exact optima of predicted loss), dense, ascending cost; solved once
        per run and stored (the run table ``proxy``), so a resumed run does not solve again."""
        if not self._proxy_points:
            self._proxy_points = self._load_or_solve_proxy()
            self._proxy_keys = {configuration_key(p.assignment) for p in self._proxy_points}
        return self._proxy_points

    def _load_or_solve_proxy(self) -> list[solvers.Solution]:
        stored = self._tables.get("proxy")
        if stored is not None:
            costs = [
                c for c in stored.columns if c not in ("proxy_point", "layer", "candidate", "predicted_loss", "optimal")
            ]
            return [
                solvers.Solution(
                    dict(zip(rows["layer"], rows["candidate"])),
                    float(rows["predicted_loss"].iloc[0]),
                    {c: float(rows[c].iloc[0]) for c in costs},
                    bool(rows["optimal"].iloc[0]),
                )
                for _, rows in stored.groupby("proxy_point", sort=True)
            ]
        s = self.plan.settings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", solvers.TruncatedFrontierWarning)
            proxy = solvers.frontier(
                self.om,
                self.plan.costs,
                [self.objective],
                budgets=self.plan.all_budgets,
                max_points=max(s.max_points, PROXY_POINTS, s.max_evals or 0),
                ties=self.plan.ties,
            )
        table = pd.DataFrame(
            [
                {
                    "proxy_point": i,
                    "layer": layer,
                    "candidate": candidate,
                    "predicted_loss": p.predicted_loss,
                    "optimal": p.optimal,
                    **p.costs,
                }
                for i, p in enumerate(proxy)
                for layer, candidate in p.assignment.items()
            ]
        )
        self.store.save_table(self.run_id, "proxy", table)
        return proxy
