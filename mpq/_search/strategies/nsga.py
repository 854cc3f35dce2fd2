"""``nsga2``: NSGA-II over the measured metric (:func:`solvers.refine`), seeded with the proxy
frontier. Optuna proposes, the evaluator measures: a configuration proposed again is read from
the evaluator's memo and costs nothing. Seeded and fed the same metrics, a resumed search's
study proposes what the uninterrupted one did."""

from __future__ import annotations

import math

import optuna

import solvers
from mpq._measured_frontier import spread
from mpq._search.evaluator import Evaluator

#: NSGA-II's population: small, so that a few tens of evaluations see several generations.
POPULATION = 8
#: Proxy optima the study starts from (both ends of the proxy frontier, then midpoints).
SEEDS = 8


class _Spent(Exception):
    """The evaluation budget ran out inside a trial."""


class Nsga2:
    """``nsga2``: NSGA-II trials of measured metric against cost until the evaluations are spent."""

    def run(self, evaluator: Evaluator) -> None:
        proxy = evaluator.proxy()
        seeds = [proxy[i] for i in spread(len(proxy))[:SEEDS]]
        storage, name = optuna.storages.InMemoryStorage(), "mpq-search"

        def measured_loss(assignment: dict[str, str]) -> float:
            solution = evaluator.price(assignment)
            value = None if solution is None else evaluator.metric(solution)
            if value is None:
                raise _Spent  # a budget-breaking trial is refused by its constraint before this
            return -value

        verbosity = optuna.logging.get_verbosity()
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            # A round ends when the budget runs out inside a trial, or its trials repeat known configurations.
            while evaluator.left > 0:
                before = evaluator.spent
                try:
                    solvers.refine(
                        evaluator.omega,
                        evaluator.costs,
                        measured_loss,
                        objectives=[evaluator.objective],
                        seeds=seeds,
                        n_trials=max(evaluator.left, 1),
                        budgets=dict(evaluator.budgets),
                        ties=[list(group) for group in evaluator.ties],
                        storage=storage,
                        study_name=name,
                        population_size=min(POPULATION, max(2, math.ceil(evaluator.left / 2))),
                    )
                except _Spent:
                    break
                if evaluator.spent == before:
                    break
        finally:
            optuna.logging.set_verbosity(verbosity)
