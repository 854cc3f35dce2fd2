"""`refine`: Optuna NSGA-II on a measured objective, seeded with frontier points."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from mpqvocab import InstanceOf, check_param, parameter_message
from solvers._errors import InvalidParameterError, SolverInputError
from solvers._inputs import check_int, check_objectives
from solvers._solution import Solution
from solvers._solve import setup

__all__ = ["refine"]

logger = logging.getLogger("solvers.refine")


def refine(
    omega: pd.DataFrame,
    costs: pd.DataFrame,
    objective_fn: Callable[[dict[str, str]], float],
    *,
    objectives: Iterable[str],
    seeds: Sequence[Solution | Mapping[str, str]] = (),
    n_trials: int,
    budgets: Mapping[str, float] | None = None,
    ties: Iterable[Iterable[str]] = (),
    fixed: Mapping[str, str] | None = None,
    storage: object = None,
    study_name: str | None = None,
    seed: int = 0,
    population_size: int = 50,
) -> list[Solution]:
    """Search allocations on a measured loss with NSGA-II, starting from `seeds`.

    The study minimises the measured loss and each cost objective. It lives in an Optuna
    storage, so several processes (or several calls) can work on one study: a call with the
    `storage` and `study_name` of an existing study continues it. Seeds are enqueued once
    (seeds already tried are skipped); the sampler's seed is `seed` plus the number of trials
    already in the study, so a continued study does not replay its first proposals.

    Args:
        omega: Omega table (see `solvers.solve`); gives each point's `predicted_loss`.
        costs: Cost table (see `solvers.solve`).
        objective_fn: Maps an assignment (layer -> candidate) to a measured loss (lower is
            better), e.g. the task's real metric after quantization, negated.
        objectives: Cost column(s) traded against the measured loss, optionally led by
            `"measured_loss"`: `["latency_s"]` or `["measured_loss", "latency_s"]`.
        seeds: Points (or bare layer -> candidate assignments) to evaluate first, typically
            `solvers.frontier(...)`.
        n_trials: Trials to run in this call (enqueued seeds included).
        budgets: Limits: max budgets shrink the search space; summed budgets become Optuna
            constraints (infeasible trials never reach the result).
        ties: Groups of layers that share a candidate (one parameter per group).
        fixed: Layer -> candidate pins (not searched).
        storage: Optuna storage or URL (`"sqlite:///mpq.db"`, `"postgresql://..."`); None
            keeps the study in memory for this call only.
        study_name: Name of the study in `storage`; None lets Optuna name a new one.
        seed: Seed of the NSGA-II sampler.
        population_size: NSGA-II population size.

    Returns:
        The study's non-dominated feasible trials over all its calls, as `Solution`s with
        `measured_loss` set, `optimal=False` and `status="measured"`, sorted by the first
        cost objective.

    Raises:
        InfeasibleBudgetError: The max budgets leave a layer no candidate.
        SolverInputError: Invalid tables, objectives, budgets, ties, pins, seeds or
            parameters, or an existing study with another number of objectives.

    Notes:
        Optuna logs each trial through its own logger; `optuna.logging.set_verbosity`
        controls it. Parameter names are the first layer of each tie group.
    """
    import optuna  # deferred: `import solvers` stays light

    problem = setup("refine", omega, costs, budgets, ties, fixed, "auto", None)
    columns = check_objectives(objectives, problem.tables, at_most=len(problem.tables.cost_columns))
    n_trials = check_int("refine", "n_trials", n_trials, 1)
    seed = check_int("refine", "seed", seed, 0)
    population_size = check_int("refine", "population_size", population_size, 2)
    if isinstance(seeds, (str, Mapping, Solution)) or not isinstance(seeds, Iterable):
        raise InvalidParameterError(
            parameter_message("refine", "seeds", "a list of Solutions or layer -> candidate mappings", seeds)
        )
    seeds = list(seeds)
    check_param(
        "refine",
        "storage",
        storage,
        InstanceOf((str, optuna.storages.BaseStorage), "an Optuna storage or URL", optional=True),
        error=InvalidParameterError,
    )
    check_param(
        "refine", "study_name", study_name, InstanceOf((str,), "a str", optional=True), error=InvalidParameterError
    )
    if not callable(objective_fn):
        raise SolverInputError(
            f"objective_fn: expected a callable, got {type(objective_fn).__name__}; pass a "
            f"function of the assignment returning the measured loss."
        )
    instance = problem.instance()
    if instance is None:
        raise problem.infeasible()
    summed = problem.summed()
    names = [instance.members(g)[0] for g in instance.rows]
    offered = [instance.options(g) for g in instance.rows]
    searched = [g for g, options in enumerate(offered) if len(options) > 1]

    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        directions=["minimize"] * (1 + len(columns)),
        load_if_exists=True,
    )
    if len(study.directions) != 1 + len(columns):
        raise SolverInputError(
            f"study {study.study_name!r}: has {len(study.directions)} objectives, this call "
            f"{1 + len(columns)} (measured loss, {', '.join(columns)}); pass the study's "
            f"objectives or another study_name."
        )
    study.sampler = optuna.samplers.NSGAIISampler(seed=seed + len(study.trials), population_size=population_size)
    for point in seeds:
        choice = instance.choice_of(point.assignment if isinstance(point, Solution) else point)
        study.enqueue_trial({names[g]: offered[g][choice[g]] for g in searched}, skip_if_exists=True)

    def choice_of(pick: Callable[[int], str]) -> np.ndarray:
        choice = np.zeros(len(offered), dtype=int)
        for g in searched:
            choice[g] = offered[g].index(pick(g))
        return choice

    def evaluate(trial: optuna.Trial) -> Sequence[float]:
        choice = choice_of(lambda g: trial.suggest_categorical(names[g], offered[g]))
        point = instance.solutions(choice[None])[0]
        for name, limit in summed.items():
            trial.set_constraint(name, point.costs[name] / limit - 1.0)
        # NSGA-II proposes allocations again; a measurement is the expensive part, so reuse it.
        for done in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,)):
            if done.params == trial.params:
                return done.values
        return (float(objective_fn(dict(point.assignment))), *(point.costs[c] for c in columns))

    study.optimize(evaluate, n_trials=n_trials)

    choices, measured, seen = [], [], set()
    for trial in study.best_trials:
        key = tuple(trial.params.get(names[g]) for g in searched)
        if key not in seen and all(trial.params.get(names[g]) in offered[g] for g in searched):
            seen.add(key)
            choices.append(choice_of(lambda g, trial=trial: trial.params[names[g]]))
            measured.append(trial.values[0])
    if not choices:
        return []
    points = instance.solutions(np.stack(choices), None, measured=measured)
    return sorted(points, key=lambda p: (p.costs[columns[0]], p.measured_loss))
