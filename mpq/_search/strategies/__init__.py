"""How a search spends its measured evaluations: strategies over one :class:`Evaluator`.

A strategy is a class with one method, ``run(evaluator)``: it asks ``evaluator.metric(solution)``
for the configurations it wants measured (None once the evaluations are spent) and reads
``evaluator.known``, ``evaluator.proxy()``, ``evaluator.pool``, ``evaluator.price(...)``. It
never touches the store: the evaluator stores each measurement, replays a resumed run's and
keeps the budget. Strategies chain: each spends what the ones before it left.

Built in (``mpq search --strategy NAME[,NAME...]``, ``mpq.search(strategy=...)``):

``frontier``
    The solver's stored frontier points (or its one optimum within ``budgets``) and the
    uniform baselines, all started at once.
``region``
    Bisection for the usable part of the proxy frontier (within 10 % of float), covered where
    the measured frontier gains most, and a sweep so that no part of the cost axis goes
    unmeasured.
``drop``
    The cheapest configuration within ``max_drop``: bisection over exact solves, then local
    repair (needs ``max_drop``).
``refine``
    The measured frontier pushed outward where it gains most (proxy optima, then one-layer
    moves); with ``max_drop``, more local repair first.
``greedy``
    AIMET's AMP: each layer alone at each cheaper candidate, then the changes by measured drop
    per cost saved, the longest prefix within the drop found by bisection.
``nsga2``
    NSGA-II over the measured metric (:func:`solvers.refine`), seeded with the proxy frontier.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from mpq._param_checks import unknown_name
from mpq._search.evaluator import Evaluator
from mpq._search.strategies.frontier_refinement import FrontierRefinement
from mpq._search.strategies.greedy import Greedy
from mpq._search.strategies.local import CheapestWithinDrop
from mpq._search.strategies.nsga import Nsga2
from mpq._search.strategies.proxy import Covering, ProxyPoints
from mpq._search.strategies.uniform import cheaper_uniforms
from mpq.exceptions import InvalidParameterError
from mpqvocab import parameter_message


@runtime_checkable
class Strategy(Protocol):
    """Decides which configurations a search measures: ``run(evaluator)``."""

    def run(self, evaluator: Evaluator) -> None: ...


#: Built-in strategies by name.
STRATEGIES: dict[str, type] = {
    "frontier": ProxyPoints,
    "region": Covering,
    "drop": CheapestWithinDrop,
    "refine": FrontierRefinement,
    "greedy": Greedy,
    "nsga2": Nsga2,
}
#: Strategies that answer "the cheapest within a drop" and need ``max_drop``.
NEEDS_DROP = ("drop",)
#: Strategies that spend whatever they are given, so need a finite one (``max_evals`` or ``max_drop``'s default).
NEEDS_BUDGET = ("nsga2",)


def default_strategy(
    *, max_drop: object, max_evals: int | None, refine: int, budgets: object, objectives: Sequence[str]
) -> tuple[str, ...]:
    """The strategies a search runs when it names none.

    - With ``max_drop``: ``drop``, the question asked.
    - With ``budgets`` or two objectives: ``frontier``, the solver's points (the one optimum
      within the budgets; the approximate three-objective frontier).
    - Otherwise ``region``, which ``bench_frontier.py`` finds ahead on measured hypervolume,
      then ``frontier`` for the uniform baselines (a named ``max_evals`` goes to ``refine``
      instead, which measures the baselines where they extend the frontier).
    - ``refine`` last when ``refine`` evaluations are asked for, or a named ``max_evals`` is
      to be spent whole.
    """
    if max_drop is not None:
        chain = ["drop"]
    elif budgets or len(objectives) > 1:
        chain = ["frontier"]
    else:
        chain = ["region"] + ([] if max_evals is not None else ["frontier"])
    if refine or max_evals is not None:
        chain.append("refine")
    return tuple(dict.fromkeys(chain))


def check_strategy(strategy: object, *, max_drop: object, max_evals: object) -> tuple:
    """``strategy`` as given to ``search``: None (the default), ``"name"``, ``"a,b"``, or a list
    of names and strategy objects; returns the chain (names and objects), checked."""
    if strategy is None:
        return ()
    entries = strategy.split(",") if isinstance(strategy, str) else strategy
    if isinstance(entries, Strategy) or not isinstance(entries, Sequence) or not entries:
        entries = [strategy]
    chain = []
    for entry in entries:
        if isinstance(entry, str) and entry.strip() in STRATEGIES:
            chain.append(entry.strip())
        elif isinstance(entry, str):
            raise unknown_name("strategy", entry.strip(), STRATEGIES)
        elif isinstance(entry, Strategy) and callable(entry.run):
            chain.append(entry)
        else:
            raise InvalidParameterError(
                parameter_message(
                    "search",
                    "strategy",
                    "a strategy name, a comma-separated chain or a list of names and "
                    "objects with a run(evaluator) method",
                    strategy,
                )
            )
    needs = next((name for name in chain if name in NEEDS_DROP), None)
    if needs is not None and max_drop is None:
        raise InvalidParameterError(
            f"strategy {needs!r} finds the cheapest configuration within max_drop; give max_drop (--max-drop), "
            "or choose another strategy."
        )
    spends = next((name for name in chain if name in NEEDS_BUDGET), None)
    if spends is not None and max_drop is None and max_evals is None:
        raise InvalidParameterError(
            f"strategy {spends!r} spends every evaluation it is given; give max_evals (--max-evals) or max_drop."
        )
    return tuple(chain)


def strategy_name(entry: str | Strategy) -> str:
    """How a chain entry is stored with the run: a built-in's name, else ``module:qualname``."""
    return entry if isinstance(entry, str) else f"{type(entry).__module__}:{type(entry).__qualname__}"


def make_strategy(entry: str | Strategy) -> Strategy:
    """The strategy object of a chain entry: a built-in by name, a stored user class (``module:
    qualname``, built without arguments) by import, or the object given."""
    if not isinstance(entry, str):
        return entry
    if entry in STRATEGIES:
        return STRATEGIES[entry]()
    module, _, qualname = entry.partition(":")
    try:
        found = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
        return found()
    except (ImportError, AttributeError, TypeError) as error:
        raise InvalidParameterError(
            f"strategy {entry!r} of the stored run cannot be rebuilt ({type(error).__name__}: {error}); make its "
            "class importable, with a constructor that takes no arguments, then resume again."
        ) from error


def spend(evaluator: Evaluator, chain: Sequence[str | Strategy], *, refine: int = 0) -> None:
    """Run ``chain`` over ``evaluator``; with a drop, then every uniform configuration cheaper
    than the incumbent (the evaluations it may need are held back from the strategies).

    ``refine`` is the refinement's own evaluations: a ``refine`` strategy spends those, plus what
    a named ``max_evals`` has left when it starts.
    """
    evaluator.owing = True
    try:
        for entry in chain:
            strategy = make_strategy(entry)
            if isinstance(strategy, FrontierRefinement):
                left = evaluator.left if evaluator.budget_named else 0
                evaluator.max_evals = evaluator.max_evals - evaluator.left + refine + left
            strategy.run(evaluator)
            evaluator.settle()
        cheaper_uniforms(evaluator)
    finally:
        evaluator.settle()
