"""Exact algorithms for the allocation under one summed cost: a multiple-choice knapsack.

With one summed cost `c` beside the loss `l`, each decision group's useful options are its
Pareto set in (c, l), and the problem has two classical exact tools, both used here:

* Frontier merge (Nemhauser and Ullmann, Management Science 1969). The non-dominated points
  of a sum of independent groups lie in the Minkowski sum of the groups' Pareto sets, so
  merging groups one at a time and dropping dominated partial sums yields every
  non-dominated point exactly. Its size can explode (about 10^6 points for 1000 layers of 8
  candidates), so it stops past a cap.

* Lagrangian core DP, one budget at a time (the core idea of Pisinger, "A minimal algorithm
  for the multiple-choice knapsack problem", EJOR 1995). Sorting every group's convex-hull
  increments by slope gives the LP relaxation at any budget B in O(log n): its break slope
  `lam`, its bound `LB`, and a feasible greedy allocation. The reduced costs
  r[g,k] = l + lam*c - min_k(l + lam*c) >= 0 bound every allocation x with cost <= B:
  loss(x) = LB + sum_g r[g,x_g] + lam*(B - cost(x)). Any allocation at least as good as an
  incumbent of loss UB therefore uses only options with r <= UB - LB, and only the
  groups with two such options stay free. A DP over the free groups (partial sums pruned by
  dominance, by the bound above and by the budget) then finds the optimum exactly, with the
  lowest cost among equal losses (a non-dominated point): its certificate is that no partial
  sum within the bound is left.

  The incumbent and the DP decide the speed at scale. The LP's greedy allocation is filled
  with the later increments (by slope) that still fit the budget, and a first DP over the 64
  groups with the smallest second reduced cost improves it further; on LLM-sized tables this
  brings UB to the optimum, and UB - LB to the integrality gap. LLM and MoE tables repeat a
  few layer shapes, so free groups share option costs: free groups with the same two
  allowed options' costs are one DP item whose option j = 0..m puts the j groups whose loss
  drops most on the dearer option (any j of them cost the same, and those j lose least).
  The 13,000 free groups of an 18,432-layer MoE table at a tight budget become tens of
  items. When the option costs above each group's cheapest are integers (bytes, BOPs,
  LUTs), every allocation's cost lies on a lattice `min_cost + k * unit` (unit: their
  greatest common divisor); the budget rounds down to it before the relaxation, so the
  budget left below one unit, which no allocation can use, no longer weakens the bound
  (on an MoE's weight bytes, the gap between hull vertices mostly closes there).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

__all__ = ["Knapsack", "StateOverflow", "nondominated"]

# Free groups of the incumbent-improving DP (a heuristic: any size keeps the result exact).
_CORE_GROUPS = 64
# Passes of the incumbent's greedy fill (a heuristic: any number keeps the result exact).
_FILL_ROUNDS = 50
# Partial sums one DP may hold before the caller falls back to an ILP.
_MAX_STATES = 200_000
# Relative slack on reduced-cost tests, so rounding never drops an optimal option.
_RTOL = 1e-12
# Relative slack on budget tests: sums of the same costs in another order differ by rounding.
_COST_RTOL = 1e-12


class StateOverflow(RuntimeError):
    """The DP held more than `_MAX_STATES` partial sums; solve this budget another way.

    Attributes:
        incumbent: The best allocation found before (caller's columns), within the budget.
        gap: Proven bound on how far its loss lies above the optimum (the Lagrangian bound's).
    """

    def __init__(self, message: str, incumbent: np.ndarray | None = None, gap: float = math.inf) -> None:
        super().__init__(message)
        self.incumbent, self.gap = incumbent, gap


def _pareto_sorted(loss: np.ndarray, cost: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each group's non-dominated options in (cost, loss), by increasing cost, left-packed.

    Returns loss, cost (inf padded) and the original option index (-1 padded).
    """
    loss = np.where(valid, loss, np.inf)
    cost = np.where(valid, cost, np.inf)
    order = np.lexsort((loss, cost), axis=-1)
    loss = np.take_along_axis(loss, order, axis=1)
    cost = np.take_along_axis(cost, order, axis=1)
    best_before = np.minimum.accumulate(loss, axis=1)
    best_before = np.concatenate([np.full((len(loss), 1), np.inf), best_before[:, :-1]], axis=1)
    keep = (loss < best_before) & np.isfinite(cost)
    pack = np.argsort(~keep, axis=1, kind="stable")
    kept = np.take_along_axis(keep, pack, axis=1)
    return (
        np.where(kept, np.take_along_axis(loss, pack, axis=1), np.inf),
        np.where(kept, np.take_along_axis(cost, pack, axis=1), np.inf),
        np.where(kept, np.take_along_axis(order, pack, axis=1), -1),
    )


def nondominated(loss: np.ndarray, cost: np.ndarray, alive: np.ndarray) -> np.ndarray:
    """Indices among `alive` of the (loss, cost) points no other point beats, by increasing
    cost; of equal points the first is kept.

    The stable sort (timsort) merges runs already sorted by cost in near-linear time, so the
    callers lay partial sums out one option after another (each option's run sorted).
    """
    alive = alive[np.argsort(cost[alive], kind="stable")]
    loss_sorted = loss[alive]
    best_before = np.concatenate([[np.inf], np.minimum.accumulate(loss_sorted)[:-1]])
    alive = alive[loss_sorted < best_before]
    # Of kept points with equal cost, the last has the least loss: it beats the others.
    cost_kept = cost[alive]
    return alive[np.append(cost_kept[1:] != cost_kept[:-1], True)[: len(alive)]]


@dataclass(frozen=True)
class _Item:
    """One step of the DP: its options' cost, loss and reduced cost, and `picks(index)`,
    the groups it decides and their option indices for option `index`."""

    cost: np.ndarray
    loss: np.ndarray
    slack: np.ndarray
    picks: Callable[[int], tuple[np.ndarray, np.ndarray]]


class Knapsack:
    """One decision group per row: minimise summed loss under a budget on summed cost.

    Args:
        loss: `G x K` loss of each option.
        cost: `G x K` cost of each option (>= 0).
        valid: `G x K` mask of the options that exist; every group needs one.

    Choices returned index the columns of the arrays given here.
    """

    def __init__(self, loss: np.ndarray, cost: np.ndarray, valid: np.ndarray) -> None:
        self.loss, self.cost, self.option = _pareto_sorted(loss, cost, valid)
        self.count = np.isfinite(self.cost).sum(axis=1)
        groups, width = self.loss.shape
        self.rows = np.arange(groups)
        self.min_cost = float(self.cost[:, 0].sum())
        self.top = self.count - 1  # the least-loss option of each group (its dearest)
        finite_loss = np.where(np.isfinite(self.loss), np.abs(self.loss), 0.0)
        self.loss_scale = float(finite_loss.max(axis=1).sum())
        self.cost_scale = float(np.where(np.isfinite(self.cost), self.cost, 0.0).max(axis=1).sum())
        self.cost_tol = _COST_RTOL * self.cost_scale
        # Integer option costs above each group's cheapest (bytes, BOPs, LUTs) put every
        # allocation's cost on the lattice min_cost + k * unit: a budget rounds down to it,
        # and the Lagrangian bound no longer counts the budget below one unit as usable.
        steps = np.where(np.isfinite(self.cost), self.cost - self.cost[:, :1], 0.0)
        integral = bool(np.all(steps == np.floor(steps))) and steps.max(initial=0.0) < 2.0**62
        self.unit = float(np.gcd.reduce(steps.astype(np.int64).ravel())) if integral else 0.0

        # Convex-hull increments of every group, by gift wrapping from its cheapest option.
        position = np.arange(width)
        current = np.zeros(groups, dtype=int)
        active = self.count > 1
        increments = []
        for step in range(width - 1):
            if not active.any():
                break
            later = (position > current[:, None]) & (position < self.count[:, None])
            with np.errstate(divide="ignore", invalid="ignore"):
                slope = np.where(
                    later,
                    (self.loss[self.rows, current][:, None] - self.loss)
                    / (self.cost - self.cost[self.rows, current][:, None]),
                    -np.inf,
                )
            nxt = slope.argmax(axis=1)
            g = np.flatnonzero(active)
            increments.append((g, current[g], nxt[g], slope[g, nxt[g]], np.full(len(g), step)))
            current = np.where(active, nxt, current)
            active &= current < self.count - 1
        if increments:
            group, start, end, slope, step = (np.concatenate(parts) for parts in zip(*increments))
        else:
            group = start = end = step = np.zeros(0, dtype=int)
            slope = np.zeros(0)
        order = np.lexsort((step, group, -slope))
        self.inc_group, self.inc_start, self.inc_end = group[order], start[order], end[order]
        self.inc_slope = slope[order]
        self.inc_cost = self.cost[self.inc_group, self.inc_end] - self.cost[self.inc_group, self.inc_start]
        self.inc_cum_cost = self.min_cost + np.cumsum(self.inc_cost)

    def to_original(self, choices: np.ndarray) -> np.ndarray:
        """Map choices (one index per group, any leading shape) to the caller's columns."""
        return self.option[self.rows, choices]

    def _relaxation(self, budget: float) -> tuple[int, float, np.ndarray, float]:
        """LP relaxation at `budget` >= min_cost: increments fully taken, break slope, reduced
        costs (`G x K`, inf for padding) and the Lagrangian bound."""
        applied = int(np.searchsorted(self.inc_cum_cost, budget, side="right"))
        lam = float(self.inc_slope[applied]) if applied < len(self.inc_slope) else 0.0
        valid = np.isfinite(self.cost)
        priced = np.where(valid, self.loss + lam * np.where(valid, self.cost, 0.0), np.inf)
        lowest = priced.min(axis=1)
        return applied, lam, priced - lowest[:, None], float(lowest.sum() - lam * budget)

    def _usable(self, budget: float) -> float:
        """`budget` plus its rounding slack, rounded down to the costs' lattice, if any, with
        the slack added back (far below one unit, so no dearer allocation gets in)."""
        budget += self.cost_tol
        if self.unit <= 2 * self.cost_tol or not math.isfinite(budget):  # inf // unit is nan
            return budget
        return self.min_cost + (budget - self.min_cost) // self.unit * self.unit + self.cost_tol

    def lp_bound(self, budget: float) -> float:
        """Lower bound on the loss of any allocation with cost <= `budget` (LP relaxation)."""
        budget = self._usable(budget)
        if budget < self.min_cost:
            return math.inf
        return self._relaxation(budget)[3]

    def optimum(self, budget: float) -> np.ndarray | None:
        """The least-loss allocation with cost <= `budget` (lowest cost among equal losses).

        Costs are compared with a relative slack of 1e-12 for rounding.

        Returns:
            Option index per group (caller's columns), or None when even the cheapest
            allocation costs more than `budget`.

        Raises:
            StateOverflow: The DP needed too many partial sums (not seen on realistic
                tables); it carries the best allocation found and its proven gap.
        """
        budget = self._usable(budget)
        if budget < self.min_cost:
            return None
        applied, lam, reduced, bound = self._relaxation(budget)
        if applied == len(self.inc_slope):
            return self.to_original(self.top)
        greedy = np.zeros(len(self.rows), dtype=int)
        np.maximum.at(greedy, self.inc_group[:applied], self.inc_end[:applied])
        second = np.sort(reduced, axis=1)[:, 1]  # a break exists, so some group has 2 options
        tol = _RTOL * (self.loss_scale + lam * self.cost_scale)

        greedy = self._filled(applied, greedy, budget)
        best = float(self.loss[self.rows, greedy].sum())
        try:
            core = np.argsort(second, kind="stable")[:_CORE_GROUPS]
            core = core[second[core] <= best - bound + tol]
            if len(core):
                greedy, best = self._dp(budget, lam, reduced, core, greedy, best - bound + tol)
            free = np.flatnonzero(second <= best - bound + tol)
            choice, _ = self._dp(budget, lam, reduced, free, greedy, best - bound + tol)
        except StateOverflow as overflow:
            raise StateOverflow(str(overflow), self.to_original(greedy), max(0.0, best - bound)) from None
        return self.to_original(choice)

    def _filled(self, applied: int, choice: np.ndarray, budget: float) -> np.ndarray:
        """`choice` (the LP's whole increments) with later increments added by slope while
        they fit the budget, skipping those that do not (a better incumbent shrinks the DP)."""
        choice = choice.copy()
        room = budget - float(self.cost[self.rows, choice].sum())
        later = np.arange(applied + 1, len(self.inc_slope))
        for _ in range(_FILL_ROUNDS):
            later = later[(self.inc_start[later] == choice[self.inc_group[later]]) & (self.inc_cost[later] <= room)]
            if not len(later):
                break
            # Distinct groups (one increment starts at each group's current option): the
            # prefix that fits is taken at once, the rest is scanned again with less room.
            taken = later[np.cumsum(self.inc_cost[later]) <= room]
            choice[self.inc_group[taken]] = self.inc_end[taken]
            room -= float(self.inc_cost[taken].sum())
            later = later[len(taken) :]
        return choice

    def _items(self, reduced: np.ndarray, free: np.ndarray, gap: float) -> list[_Item]:
        """The DP's items over the `free` groups, using options with reduced cost <= `gap`.

        A group with three or more such options is an item of its own. Groups with exactly
        two, whose two costs are equal, form one item: with j of its m groups on the dearer
        option, the j whose loss drops most are best, so its options are j = 0..m (those
        within `gap`). LLM and MoE tables repeat a few layer shapes, so thousands of free
        groups become tens of items.
        """
        allowed = reduced[free] <= gap
        columns = np.argsort(~allowed, axis=1, kind="stable")  # allowed options first, by cost
        counts = allowed.sum(axis=1)
        items = []
        for row in np.flatnonzero(counts != 2):
            group, options = free[row], columns[row, : counts[row]]
            items.append(
                _Item(
                    self.cost[group, options],
                    self.loss[group, options],
                    reduced[group, options],
                    lambda index, group=group, options=options: ([group], options[index]),
                )
            )
        two = counts == 2
        groups, low, high = free[two], columns[two, 0], columns[two, 1]
        keys = np.stack([self.cost[groups, low], self.cost[groups, high]], axis=1)
        kind = np.unique(keys, axis=0, return_inverse=True)[1].ravel()
        drop = self.loss[groups, high] - self.loss[groups, low]
        order = np.lexsort((drop, kind))
        for members in np.split(order, np.flatnonzero(np.diff(kind[order])) + 1) if len(order) else []:
            g, lo, hi = groups[members], low[members], high[members]
            slack = reduced[g, lo].sum() + np.append(0.0, np.cumsum(reduced[g, hi] - reduced[g, lo]))
            taken = np.flatnonzero(slack <= gap)
            low_cost, high_cost = keys[members[0]]
            items.append(
                _Item(
                    low_cost * len(g) + taken * (high_cost - low_cost),
                    self.loss[g, lo].sum() + np.append(0.0, np.cumsum(drop[members]))[taken],
                    slack[taken],
                    lambda index, g=g, lo=lo, hi=hi, taken=taken: (
                        g,
                        np.where(np.arange(len(g)) < taken[index], hi, lo),
                    ),
                )
            )
        return items

    def _dp(
        self, budget: float, lam: float, reduced: np.ndarray, free: np.ndarray, base: np.ndarray, gap: float
    ) -> tuple[np.ndarray, float]:
        """Least-loss allocation that differs from `base` only on `free` groups, using options
        with reduced cost <= `gap` and total reduced cost <= `gap`."""
        items = self._items(reduced, free, gap)
        # Items whose alternatives cost most reduced cost first: they prune partial sums
        # early, and the nearly-free items, which multiply them, come last.
        second = [np.sort(item.slack)[1] if len(item.slack) > 1 else np.inf for item in items]
        items = [items[i] for i in np.argsort(-np.asarray(second), kind="stable")]
        fixed = np.ones(len(self.rows), dtype=bool)
        fixed[free] = False
        min_rest = np.append(np.cumsum([item.cost.min() for item in items][::-1])[::-1], 0.0)
        max_rest = np.append(np.cumsum([item.cost.max() for item in items][::-1])[::-1], 0.0)

        loss = np.array([self.loss[self.rows[fixed], base[fixed]].sum()])
        cost = np.array([self.cost[self.rows[fixed], base[fixed]].sum()])
        slack = np.zeros(1)
        trail = []
        for step, item in enumerate(items):
            states = len(loss)
            loss = (item.loss[:, None] + loss).ravel()  # one option after another (see nondominated)
            cost = (item.cost[:, None] + cost).ravel()
            slack = (item.slack[:, None] + slack).ravel()
            # loss of any completion >= bound + slack + lam * (unused budget).
            unused = np.maximum(0.0, budget - cost - max_rest[step + 1])
            feasible = (slack + lam * unused <= gap) & (cost + min_rest[step + 1] <= budget)
            alive = nondominated(loss, cost, np.flatnonzero(feasible))
            if len(alive) > _MAX_STATES:
                raise StateOverflow(f"{len(alive)} partial sums at budget {budget}")
            trail.append((alive % states, alive // states))
            loss, cost, slack = loss[alive], cost[alive], slack[alive]
        state = int(np.argmin(loss))
        best = float(loss[state])
        choice = base.copy()
        for item, (parent, option) in zip(items[::-1], trail[::-1]):
            groups, options = item.picks(int(option[state]))
            choice[groups] = options
            state = parent[state]
        return choice, best

    def frontier(self, budget: float, max_points: int) -> np.ndarray | None:
        """Every non-dominated allocation with cost <= `budget`, by increasing cost.

        Returns:
            `P x G` option indices (caller's columns), or None when a partial merge exceeds
            `max_points` points.
        """
        budget += self.cost_tol
        min_rest = np.append(np.cumsum(self.cost[::-1, 0])[::-1], 0.0)
        loss, cost = np.zeros(1), np.zeros(1)
        trail = []
        for group in self.rows:
            width, states = int(self.count[group]), len(loss)
            loss = (self.loss[group, :width, None] + loss).ravel()  # one option after another
            cost = (self.cost[group, :width, None] + cost).ravel()
            alive = nondominated(loss, cost, np.flatnonzero(cost + min_rest[group + 1] <= budget))
            if len(alive) > max_points:
                return None
            trail.append((alive % states, alive // states))
            loss, cost = loss[alive], cost[alive]
        choices = np.empty((len(loss), len(self.rows)), dtype=int)
        state = np.arange(len(loss))
        for group in self.rows[::-1]:
            parent, option = trail[group]
            choices[:, group] = option[state]
            state = parent[state]
        return self.to_original(choices)
