"""What a search searches for: its settings (checked, versioned) and its plan (settings, device,
layer table and cost table), built once before the first probe sample."""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import pandas as pd
import torch

import hwmodels
import solvers
from mpq._fingerprint import task_code
from mpq._formats import candidate_table, get_candidate
from mpq._layers import layers
from mpq._measured_frontier import check_drop
from mpq._param_checks import InstanceOf, Interval, OneOf, check_param, unknown_name
from mpq._probes import ProbeSettings, check_loss, fit_estimator
from mpq._probes.settings import check_settings, for_device, settings_from_json, settings_to_json
from mpq._search.identity import Identity
from mpq._search.strategies import check_strategy, default_strategy, strategy_name
from mpq._task import Task, run_model
from mpq.exceptions import InvalidParameterError, TaskSpecError
from mpqvocab import choices_hint, parameter_message

#: ``progress(stage, done, total, message)``; stages: layers, costs, resume (an unfinished run
#: of the same search taken up), probe, omega, solve, validate, store.
Progress = Callable[[str, int, int, str], None]

_VERSIONED_PACKAGES = ("mpq", "torch", "numpy", "pandas", "pulp", "highspy", "optuna", "sqlalchemy")

#: Element bits at or below which a candidate's loss increase is measured with ``--probe
#: hybrid``: 2- and 3-bit formats move a layer far outside the quadratic regime.
HYBRID_MAX_BITS = 3


@dataclass(frozen=True)
class SearchSettings:
    """How a search searches, beside its task, target, objectives and budgets.

    Stored with the run (``run.record["settings"]``) as JSON with a ``version``, and compared to
    recognise the same search. A new setting is one field here, with the default that runs
    stored before it get back, and its check in :meth:`check` (and its parameter of ``search``).
    """

    #: 1: runs stored before the settings had a version (no ``strategy``).
    VERSION = 2

    target: str
    candidates: tuple[str, ...]
    probe: ProbeSettings
    batch_size: int = 1
    max_points: int = 20
    validate: bool = True
    max_drop: float | str | None = None
    max_evals: int | None = None
    refine: int = 0
    #: The strategies the search runs, in order (names, or objects given to ``search``): the
    #: named ones, else :func:`default_strategy`'s; empty in runs stored before version 2.
    strategy: tuple = ()
    #: The task's metric direction (``Task.higher_is_better``): drops, dominance and the best
    #: point of the run follow it.
    higher_is_better: bool = True
    #: Fused sets: groups of layers that share one candidate in every configuration
    #: (``Task.fused``, unless the search was told ``fuse=False``).
    ties: tuple[tuple[str, ...], ...] = ()
    #: The task's fused sets (``Task.fused``), tied or not: what an export to a serving engine
    #: must keep at one format (empty in runs stored before they were recorded: their ties then).
    fused: tuple[tuple[str, ...], ...] = ()

    @staticmethod
    def check(task: Task, **values: object) -> dict:
        """Check the settings a user gives (all but target, candidates and probe, which the plan
        checks against the device): a new setting adds its check here. Returns them, ready for
        the constructor (the strategy as its checked chain)."""
        batch_size, max_points, validate = values["batch_size"], values["max_points"], values["validate"]
        max_drop, max_evals, refine = values["max_drop"], values["max_evals"], values["refine"]
        check_param("search", "batch_size", batch_size, Interval(int, 1, None))
        check_param("search", "max_points", max_points, Interval(int, 2, None))
        check_param("search", "validate", validate, OneOf((True, False)))
        if max_drop is not None:
            check_drop(max_drop)
        if max_evals is not None:
            check_param("search", "max_evals", max_evals, Interval(int, 2, None))
        check_param("search", "refine", refine, Interval(int, 0, None))
        check_param("search", "fuse", values.pop("fuse"), OneOf((True, False)))
        chain = check_strategy(values["strategy"], max_drop=max_drop, max_evals=max_evals)
        measures = [
            flag
            for flag, given in (("max_drop", max_drop is not None), ("refine", refine > 0), ("strategy", bool(chain)))
            if given
        ]
        if measures and not validate:
            raise InvalidParameterError(
                f"{' and '.join(measures)} need measured evaluations, and validate=False (--no-validate) turns them "
                "off; drop one of the two."
            )
        if validate and task.evaluate is None:
            what = " and ".join(measures) + " need" if measures else "its points need"
            raise InvalidParameterError(
                f"task {task.name!r} has no evaluate function, and {what} measured evaluations; "
                "give Task(evaluate=...)" + ("." if measures else " or pass validate=False (--no-validate).")
            )
        return {**values, "strategy": chain, "higher_is_better": task.higher_is_better}

    def to_json(self) -> dict:
        data = {field.name: getattr(self, field.name) for field in fields(self)}
        return {
            "version": self.VERSION,
            **data,
            "probe": settings_to_json(self.probe),
            "candidates": list(self.candidates),
            "strategy": [strategy_name(entry) for entry in self.strategy],
            "ties": [list(group) for group in self.ties],
            "fused": [list(group) for group in self.fused],
        }

    @classmethod
    def from_json(cls, saved: Mapping) -> SearchSettings:
        names = {field.name for field in fields(cls)}
        data = {name: value for name, value in saved.items() if name in names}
        return cls(
            **{
                **data,
                "probe": settings_from_json(saved["probe"]),
                "candidates": tuple(saved["candidates"]),
                "strategy": tuple(saved.get("strategy", ())),
                "ties": tuple(tuple(group) for group in saved.get("ties", ())),
                "fused": tuple(tuple(group) for group in saved.get("fused", saved.get("ties", ()))),
            }
        )


def _versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in _VERSIONED_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


@dataclass(frozen=True)
class Plan:
    """What a run searches for, checked and built once before the first probe sample."""

    settings: SearchSettings
    device: hwmodels.Device
    objectives: tuple[str, ...]
    budgets: dict[str, float]
    layer_table: pd.DataFrame
    costs: pd.DataFrame

    @property
    def all_budgets(self) -> dict[str, float]:
        """The user's budgets and the device's own capacities (flash, SRAM, LUTs...)."""
        return {**self.device.limits(), **self.budgets}

    @property
    def ties(self) -> list[list[str]]:
        """The fused sets, as the solvers take them."""
        return [list(group) for group in self.settings.ties]

    @property
    def strategy(self) -> tuple:
        """The strategies the search runs (a run stored before they were named: the default's)."""
        s = self.settings
        return s.strategy or default_strategy(
            max_drop=s.max_drop,
            max_evals=s.max_evals,
            refine=s.refine,
            budgets=self.budgets,
            objectives=self.objectives,
        )

    def record_fields(self, task: Task, identity: Identity) -> dict:
        """The run's stored fields: what makes it this search, and the versions that ran it."""
        return dict(
            task_name=task.name,
            model_spec=task.spec,
            metric_name=task.metric_name,
            model_hash=identity.model_hash,
            data_hash=identity.data_hash,
            probe_key=identity.probe_key,
            target=self.device.name,
            objectives=list(self.objectives),
            budgets=self.budgets,
            versions=_versions(),
            # another loss or metric is another search
            settings=self.settings.to_json() | {"task_code": task_code(task)},
        )

    @classmethod
    def new(
        cls,
        task: Task,
        *,
        target: str,
        objectives: Sequence[str] | str,
        budgets: Mapping[str, float] | None,
        candidates: Sequence[str] | None,
        settings: ProbeSettings | None,
        measured: str | Path | pd.DataFrame | None,
        progress: Progress,
        **values: object,
    ) -> Plan:
        """Check every argument a user can get wrong, trace the model once and cost it.

        ``values``: the rest of :class:`SearchSettings` (``batch_size``, ``max_points``...),
        checked by :meth:`SearchSettings.check`.
        """
        if isinstance(objectives, str):
            objectives = (objectives,)
        if not isinstance(objectives, Iterable) or not all(isinstance(o, str) for o in objectives):
            raise InvalidParameterError(
                parameter_message("search", "objectives", "a cost column name or a list of them", objectives)
            )
        objectives = tuple(o for o in objectives if o != "predicted_loss")
        if not 1 <= len(objectives) <= 2:
            raise InvalidParameterError(
                "The 'objectives' parameter of search must name one or two cost columns (beside the predicted loss). "
                f"Got {list(objectives)!r} instead."
            )
        check_param(
            "search", "budgets", budgets, InstanceOf((Mapping,), "a mapping of cost column to limit", optional=True)
        )
        if candidates is not None and (isinstance(candidates, str) or not isinstance(candidates, Iterable)):
            raise InvalidParameterError(
                parameter_message("search", "candidates", "a list of candidate names", candidates)
            )
        budgets = dict(budgets or {})
        for name, limit in budgets.items():
            check_param("search", f"budgets[{name!r}]", limit, Interval(float, 0, None, closed="neither"))
        fuse = values["fuse"]
        values = SearchSettings.check(task, **values)
        values["fused"] = tuple(tuple(group) for group in task.fused)
        values["ties"] = values["fused"] if fuse else ()
        device = hwmodels.load_device(target)
        named = tuple(candidates or ())
        candidates = named or tuple(device.candidates)
        candidates_table = candidate_table(candidates)
        # The default is the device's own list; a candidate the user names is searched or refused,
        # never dropped by the cost table without a word.
        unrun = next((name for name in named if name not in device.candidates), None)
        if unrun is not None:
            raise InvalidParameterError(
                f"candidate {unrun!r} does not run on {device.name}; choose among the candidates it runs: "
                f"{choices_hint(unrun, device.candidates)}, or add it to the candidates of a copy of "
                f"{device.path.name} and target that file."
            )
        probe_settings = check_settings("search", _measured_candidates(settings or ProbeSettings(), candidates))
        probe_settings = for_device(probe_settings, device.activation_grid)
        progress("layers", 0, 1, "running the model once")
        layer_table = layers(task.model, task.calibration[0][0])
        probe_settings = fit_estimator(task, probe_settings)
        _check_loss(task, layer_table, probe_settings)
        progress("costs", 0, 1, f"costing {len(layer_table)} layers x {len(candidates)} candidates on {device.name}")
        costs = hwmodels.cost_table(
            layer_table, device, candidates_table, batch_size=values["batch_size"], measured=measured
        )
        _check_cost_names(costs, objectives, "objective")
        _check_cost_names(costs, list(budgets), "budget")
        if not values["strategy"]:  # stored as resolved: a resumed run keeps it whatever a later default is
            values["strategy"] = default_strategy(
                max_drop=values["max_drop"],
                max_evals=values["max_evals"],
                refine=values["refine"],
                budgets=budgets,
                objectives=objectives,
            )
        plan = cls(
            SearchSettings(target=str(target), candidates=candidates, probe=probe_settings, **values),
            device,
            objectives,
            {k: float(v) for k, v in budgets.items()},
            layer_table,
            costs,
        )
        zero = costs[["layer", "candidate"]].assign(omega=0.0)
        # InfeasibleBudgetError here, before any probe runs (and a fused set of unknown layers)
        solvers.solve(zero, costs, plan.all_budgets, ties=plan.ties)
        return plan

    @classmethod
    def stored(cls, record: Mapping, tables: Mapping[str, pd.DataFrame]) -> Plan:
        """The plan a stored run was started with: its own settings, layer table and costs."""
        settings = SearchSettings.from_json(record["settings"])
        return cls(
            settings,
            hwmodels.load_device(settings.target),
            tuple(record["objectives"]),
            dict(record["budgets"]),
            tables["layers"],
            tables["costs"],
        )

    def highest(self) -> dict[str, str]:
        """Every layer at its most precise candidate: the most bits per value, then the largest cost."""
        bits = candidate_table(self.settings.candidates).set_index("candidate")
        offered = self.costs.assign(
            bits=lambda t: (
                bits.loc[t["candidate"], "weight_bits"].to_numpy() + bits.loc[t["candidate"], "act_bits"].to_numpy()
            )
        )
        best = offered.sort_values(["bits", self.objectives[0]]).groupby("layer", sort=False).tail(1)
        highest = dict(zip(best["layer"], best["candidate"]))
        for group in self.settings.ties:  # a fused set takes its first layer's
            highest |= dict.fromkeys(group, highest[group[0]])
        return highest


def _measured_candidates(settings: object, candidates: Sequence[str]) -> object:
    """Settings with the ``measured`` probe but no candidates of their own get the search's: all
    of them for ``measured`` alone; with trace probes beside (the hybrid), the candidates whose
    weight or activation elements have at most ``HYBRID_MAX_BITS`` bits (none: trace probes only)."""
    if not isinstance(settings, ProbeSettings) or "measured" not in settings.probes or settings.candidates:
        return settings
    traces = tuple(p for p in settings.probes if p != "measured")
    if not traces:
        return dataclasses.replace(settings, candidates=tuple(candidates))
    coarse = tuple(
        c
        for c in candidates
        if min(get_candidate(c).weight_format.element_bits, get_candidate(c).act_format.element_bits) <= HYBRID_MAX_BITS
    )
    if not coarse:
        return dataclasses.replace(settings, probes=traces)
    return dataclasses.replace(settings, candidates=coarse)


def _check_cost_names(costs: pd.DataFrame, names: Sequence[str], what: str) -> None:
    columns = [c for c in costs.columns if c not in ("layer", "candidate") and pd.api.types.is_numeric_dtype(costs[c])]
    for name in names:
        if name not in columns:
            raise unknown_name(what, name, columns)


def _check_loss(task: Task, layer_table: pd.DataFrame, settings: ProbeSettings) -> None:
    """The loss of the first calibration batch must be a finite number (NaN outputs are caught here)
    that depends on the model's weights."""
    inputs, targets = task.calibration[0]
    with torch.no_grad():
        loss = task.loss_fn(run_model(task.model, inputs), targets)
    if not torch.isfinite(torch.as_tensor(loss)).all():
        raise TaskSpecError(
            f"task {task.name!r}: the loss of calibration batch 0 is {float(torch.as_tensor(loss).float().mean())}; "
            "check the model's outputs and the data for NaN or inf before searching."
        )
    check_loss(task, layer_table, settings)
