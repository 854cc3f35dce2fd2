"""The allocation problem as arrays: one decision per group of tied layers.

Tied layers must share a candidate, so each tie group (merged when groups overlap) becomes a
single decision whose options are the candidates all its layers run; an option's omega and
summed costs add up over the group's layers, max-aggregated costs take their maximum. A pinned
layer leaves its group a single option. Options are stored in `G x K` arrays padded with
`inf` (and candidate id -1), so every algorithm works on plain numpy arrays.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from solvers._errors import SolverInputError
from solvers._inputs import Tables
from solvers._solution import Solution

__all__ = ["Instance", "build_instance"]


@dataclass(frozen=True, eq=False)
class Instance:
    """Decision groups and their options.

    Attributes:
        layers: Every layer, in omega's order.
        group_of: Group index of each layer.
        cand_names: Candidate names; `option_cand` indexes into it.
        option_cand: `G x K` candidate id of each option, -1 for padding.
        loss: `G x K` summed omega of each option, inf for padding.
        costs: Cost column -> `G x K` value of each option (sum or max over the group's
            layers), inf for padding.
        max_columns: Cost columns aggregated by maximum.
    """

    layers: tuple[str, ...]
    group_of: np.ndarray
    cand_names: tuple[str, ...]
    option_cand: np.ndarray
    loss: np.ndarray
    costs: Mapping[str, np.ndarray]
    max_columns: frozenset[str]

    @property
    def rows(self) -> np.ndarray:
        """Group indices 0..G-1, for fancy indexing with a choice."""
        return np.arange(len(self.loss))

    @property
    def valid(self) -> np.ndarray:
        """`G x K` mask of real (non-padding) options."""
        return self.option_cand >= 0

    def keep(self, mask: np.ndarray) -> Instance:
        """Instance with only the options where `mask` is True, packed to the left."""
        mask = mask & self.valid
        order = np.argsort(~mask, axis=1, kind="stable")
        width = max(int(mask.sum(axis=1).max()), 1)
        order = order[:, :width]
        kept = np.take_along_axis(mask, order, axis=1)

        def pack(values: np.ndarray, fill: float) -> np.ndarray:
            return np.where(kept, np.take_along_axis(values, order, axis=1), fill)

        return Instance(
            layers=self.layers,
            group_of=self.group_of,
            cand_names=self.cand_names,
            option_cand=pack(self.option_cand, -1).astype(int),
            loss=pack(self.loss, np.inf),
            costs={name: pack(values, np.inf) for name, values in self.costs.items()},
            max_columns=self.max_columns,
        )

    def within_max_budgets(self, budgets: Mapping[str, float]) -> Instance:
        """Instance without the options that exceed a max-aggregated budget."""
        mask = np.ones_like(self.valid)
        for name, limit in budgets.items():
            if name in self.max_columns:
                mask &= self.costs[name] <= limit
        return self.keep(mask)

    def without_dominated(self, columns: Sequence[str]) -> Instance:
        """Instance without options dominated within their group on loss and `columns`.

        Option a is dropped when another option b of its group is no worse on the loss and on
        every column of `columns` and better on one, or equal on all and listed first. No
        optimum or non-dominated point on these criteria needs a dropped option.
        """
        values = np.stack([self.loss, *(self.costs[name] for name in columns)], axis=-1)
        # le[g, b, a]: option b no worse than option a on every criterion.
        le = np.all(values[:, :, None, :] <= values[:, None, :, :], axis=-1)
        lt = np.any(values[:, :, None, :] < values[:, None, :, :], axis=-1)
        width = values.shape[1]
        first = np.arange(width)[:, None] < np.arange(width)[None, :]
        beaten = le & (lt | first) & self.valid[:, :, None]
        return self.keep(~beaten.any(axis=1))

    def column_values(self, name: str, choices: np.ndarray) -> np.ndarray:
        """Value of cost column `name` (or `"loss"`) for each row of `choices` (`P x G`)."""
        values = self.loss if name == "loss" else self.costs[name]
        picked = values[self.rows, choices]  # a plain gather: the complete frontier has 10^5 rows
        return picked.max(axis=1) if name in self.max_columns else picked.sum(axis=1)

    def solutions(
        self,
        choices: np.ndarray,
        gap: float | Sequence[float] | None = 0.0,
        *,
        measured: Sequence[float] | None = None,
    ) -> list[Solution]:
        """One `Solution` per row of `choices` (`P x G` option indices).

        `gap` (one bound, or one per row; None: unknown) sets `Solution.gap`, `optimal`
        (a gap of 0.0) and the status (`"optimal"`/`"feasible"`); with `measured` losses the
        status is `"measured"`.
        """
        choices = np.asarray(choices, dtype=int).reshape(-1, self.loss.shape[0])
        gaps = [None] * len(choices) if gap is None else np.broadcast_to(np.asarray(gap, dtype=float), len(choices))
        losses = self.column_values("loss", choices)
        columns = {name: self.column_values(name, choices) for name in self.costs}
        candidate_ids = self.option_cand[self.rows, choices]
        names = np.asarray(self.cand_names, dtype=object)[candidate_ids[:, self.group_of]]
        return [
            Solution(
                assignment=dict(zip(self.layers, names[row].tolist())),
                predicted_loss=float(losses[row]),
                costs={name: float(values[row]) for name, values in columns.items()},
                optimal=bool(gaps[row] == 0.0),
                status="measured" if measured is not None else "optimal" if gaps[row] == 0.0 else "feasible",
                measured_loss=None if measured is None else float(measured[row]),
                gap=None if gaps[row] is None else float(gaps[row]),
            )
            for row in range(len(choices))
        ]

    def members(self, group: int) -> list[str]:
        """Layers of decision group `group`, in omega's order."""
        return [self.layers[i] for i in np.flatnonzero(self.group_of == group)]

    def options(self, group: int) -> list[str]:
        """Candidate names of the options of decision group `group`."""
        return [self.cand_names[c] for c in self.option_cand[group] if c >= 0]

    def choice_of(self, assignment: Mapping[str, str]) -> np.ndarray:
        """Option index of each group for an assignment that respects the groups' options.

        Raises:
            SolverInputError: A group's layers are assigned a candidate that is not one of
                its options (an untied pair, a pinned layer moved, a candidate over a max
                budget, or a layer missing from the assignment).
        """
        choice = np.empty(self.loss.shape[0], dtype=int)
        for group in range(len(choice)):
            members, offered = self.members(group), self.options(group)
            picked = {assignment.get(layer) for layer in members}
            if len(picked) != 1 or next(iter(picked)) not in offered:
                raise SolverInputError(
                    f"seeds: layers {', '.join(members)} are assigned {sorted(map(str, picked))}; "
                    f"give them one candidate among {', '.join(offered)}."
                )
            choice[group] = offered.index(next(iter(picked)))
        return choice


def _tie_groups(layers: tuple[str, ...], ties: list[list[str]]) -> np.ndarray:
    """Group index of each layer after merging overlapping tie groups (union-find)."""
    parent = list(range(len(layers)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    index = {layer: i for i, layer in enumerate(layers)}
    for group in ties:
        for a, b in zip(group, group[1:]):
            ra, rb = root(index[a]), root(index[b])
            parent[max(ra, rb)] = min(ra, rb)
    roots = [root(i) for i in range(len(layers))]
    return pd.factorize(pd.Series(roots))[0]


def build_instance(tables: Tables, ties: list[list[str]], fixed: dict[str, str]) -> Instance:
    """Contract ties and pins into decision groups.

    Raises:
        SolverInputError: A tie group whose layers share no candidate, or pins that disagree
            within a tie group or name a candidate its tied layers do not all run.
    """
    layers = tables.layers
    group_of = _tie_groups(layers, ties)
    groups = int(group_of.max()) + 1
    layer_group = dict(zip(layers, group_of))

    def members(group: int) -> list[str]:
        return [layers[i] for i in np.flatnonzero(group_of == group)]

    pairs = tables.pairs.assign(group=tables.pairs["layer"].map(layer_group))
    pins: dict[int, str] = {}
    for layer, candidate in fixed.items():
        group = layer_group[layer]
        if pins.setdefault(group, candidate) != candidate:
            raise SolverInputError(
                f"fixed: tied layers {', '.join(members(group))} are pinned to both "
                f"{pins[group]!r} and {candidate!r}; pin tied layers to one candidate."
            )
    pinned = pairs["group"].map(pins)
    pairs = pairs[pinned.isna() | (pairs["candidate"] == pinned)]

    columns = ["omega", *tables.cost_columns]
    if groups == len(layers):  # no ties: each pair is an option already (a groupby costs 20 ms per call)
        options = pairs[["group", "candidate", *columns]]
    else:
        options = (
            pairs.groupby(["group", "candidate"], sort=False)
            .agg(
                n_layers=("omega", "count"),
                **{c: (c, "max" if c in tables.max_columns else "sum") for c in columns},
            )
            .reset_index()
        )
        # A tied group's option is a candidate that every one of its layers runs.
        sizes = pd.Series(group_of).value_counts()
        options = options[options["n_layers"].to_numpy() == sizes[options["group"]].to_numpy()]
    for group in np.setdiff1d(np.arange(groups), options["group"].unique()):
        offered = {layer: tables.candidates_of(layer) for layer in members(group)}
        listing = "; ".join(f"{layer}: {', '.join(c)}" for layer, c in offered.items())
        pin = f" with the pin {pins[group]!r}" if group in pins else ""
        raise SolverInputError(
            f"ties: layers {', '.join(members(group))} share no candidate{pin} ({listing}); "
            f"tie only layers that run a common candidate."
        )
    options = options.sort_values("group", kind="stable")
    slot = options.groupby("group").cumcount().to_numpy()
    group = options["group"].to_numpy()
    cand_codes, cand_names = pd.factorize(options["candidate"])
    shape = (groups, int(slot.max()) + 1)

    def grid(values: np.ndarray, fill: float) -> np.ndarray:
        out = np.full(shape, fill, dtype=float)
        out[group, slot] = values
        return out

    return Instance(
        layers=layers,
        group_of=np.asarray(group_of),
        cand_names=tuple(cand_names),
        option_cand=grid(cand_codes, -1).astype(int),
        loss=grid(options["omega"].to_numpy(dtype=float), np.inf),
        costs={c: grid(options[c].to_numpy(dtype=float), np.inf) for c in tables.cost_columns},
        max_columns=tables.max_columns,
    )
