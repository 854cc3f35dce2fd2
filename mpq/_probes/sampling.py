"""Monte Carlo estimation of a trace family: seeded samples, running statistics, stopping rule.

A *sample* of a family takes every calibration batch (the default, stratified: the spread
between batches drops out) or ``batches_per_sample`` of them drawn uniformly without
replacement, and on each one random draw of every target at once (``family.draw``); scaled by
``n_batches / k * n_b / N`` the draws sum to an unbiased estimate of every target's trace over
the whole calibration loss. The estimate is the mean over samples, its standard error the
sample standard deviation over ``sqrt(n)``: it covers the probe vectors' noise *and* any batch
sub-sampling, so a 5 % tolerance means 5 % of the full-calibration trace.

Sampled where it helps most: after ``min_samples`` samples, and after every later one, the
keys still above the tolerance are projected to need ``n (rel / tolerance)^2`` samples (the
standard error falls as ``1/sqrt(n)``; capped at ``max_samples``). A key over at most
``ProbeSettings.exact_max_params`` elements is switched to its exact trace (``family.exact``:
one product per element and batch, :mod:`mpq._probes.exact`, summed with the same weights
``n_b / N``) when that costs fewer products (Hessian- or Jacobian-vector products and backward
passes, counted alike) than the samples it saves, which are those by which the projected need
of the slowest key left to sample falls. Exact keys have a standard error of 0, the draws leave
them out (with their cross-layer terms: the noise of ``hutchinson`` and of ``split``'s residual
falls for the rest), and the stopping rule waits only for the sampled keys.

Sample ``i`` draws all its randomness from a generator seeded by ``(seed, family, i)``, and the
running sums are updated in sample order: a run resumed from a checkpoint after any sample
gives the same numbers, bit for bit, as one that never stopped. The switch to exact traces is
a function of the saved statistics, decided before the next sample; the exact traces take no
randomness and are saved as soon as they are computed.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from mpq._probes.graph import Batch, Target
from mpq._probes.settings import ProbeSettings

#: A row key of a trace family: (probe name, layer).
Key = tuple[str, str]


class Family(Protocol):
    """A group of probes estimated from the same random draws."""

    name: str
    #: Hessian-vector products and backward passes taken so far (the family counts them).
    hvps: int
    backwards: int

    def draw(self, batch: Batch, generator: torch.Generator, only: set[Target] | None = None) -> dict[Target, float]:
        """One unbiased draw of every target's trace of ``batch``'s loss (of ``only``'s, when given:
        the random vectors leave the other targets out, and with them their cross terms)."""

    def exact(self, batch: Batch, targets: set[Target]) -> dict[Target, float]:
        """The exact trace of ``batch``'s loss of each of ``targets`` it can compute (those it
        cannot, it leaves out: they are sampled)."""


@dataclass
class RunningStats:
    """Running mean and sum of squared deviations (Welford) of every key's samples.

    Attributes:
        keys: (probe, layer) per estimate.
        n: Samples taken.
        exact: Per key: 0 when sampled; the unit vectors its exact trace took (its
            ``n_params``, each over every calibration batch) once ``mean`` holds that trace;
            -1 when the family cannot compute it exactly (sampled for good).
        exact_products: Products spent on exact traces (part of ``hvps + backwards``).
        mean: Running mean per key.
        m2: Sum of squared deviations from the mean per key.
        hvps: Hessian-vector products spent.
        backwards: Plain backward passes spent.
        seconds: Wall time spent sampling, summed over resumed runs.
    """

    keys: list[Key]
    n: int = 0
    mean: list[float] = field(default_factory=list)
    m2: list[float] = field(default_factory=list)
    hvps: int = 0
    backwards: int = 0
    seconds: float = 0.0
    exact: list[int] = field(default_factory=list)
    exact_products: int = 0

    def __post_init__(self) -> None:
        zeros = [0.0] * len(self.keys)
        self.mean = self.mean or list(zeros)
        self.m2 = self.m2 or list(zeros)
        self.exact = self.exact or [0] * len(self.keys)

    def sampled(self) -> list[int]:
        """Indices of the keys estimated by sampling (not exact)."""
        return [i for i, e in enumerate(self.exact) if e <= 0]

    def update(self, sample: list[float]) -> None:
        """Add one sample (one value per key; the exact keys' values are ignored)."""
        self.n += 1
        for i, x in enumerate(sample):
            if self.exact[i] > 0:
                continue
            delta = x - self.mean[i]
            self.mean[i] += delta / self.n
            self.m2[i] += delta * (x - self.mean[i])

    def stderr(self, i: int) -> float:
        """Standard error of key ``i``'s estimate (NaN below two samples; 0 for an exact key)."""
        if self.exact[i] > 0:
            return 0.0
        if self.n < 2:
            return math.nan
        return math.sqrt(max(self.m2[i], 0.0) / (self.n - 1) / self.n)

    def relative_stderr(self, i: int) -> float:
        """``stderr / |estimate|``; 0 when every sample was equal, inf for a zero estimate."""
        se = self.stderr(i)
        if se == 0.0:
            return 0.0
        value = abs(self.mean[i])
        return se / value if value > 0 else math.inf

    def worst(self) -> tuple[float, Key | None]:
        """The largest relative standard error of a sampled key and the key (0, None when none is)."""
        sampled = self.sampled()
        if not sampled:
            return 0.0, None
        if self.n < 2:
            return math.inf, None
        i = max(sampled, key=self.relative_stderr)
        return self.relative_stderr(i), self.keys[i]

    def unconverged(self, tolerance: float) -> list[Key]:
        """Keys whose relative standard error is above the tolerance."""
        return [k for i, k in enumerate(self.keys) if not self.relative_stderr(i) <= tolerance]

    def done(self, settings: ProbeSettings, decided: Callable[[RunningStats], bool] | None = None) -> bool:
        """Whether the stopping rule holds: no sampled key, the sample cap, or after the minimum:
        every key within the tolerance (``stop="tolerance"``) or ``decided(self)`` (``"decision"``)."""
        if not self.sampled():
            return True
        if self.n < settings.min_samples:
            return False
        if settings.stop == "decision":  # asked at the cap too: the caller learns whether it was resolved
            return decided(self) or self.n >= settings.max_samples
        return self.n >= settings.max_samples or not self.unconverged(settings.tolerance)

    def to_state(self) -> dict:
        """A JSON-serialisable dict (floats round-trip exactly through JSON)."""
        return {
            "keys": [list(k) for k in self.keys],
            "n": self.n,
            "mean": self.mean,
            "m2": self.m2,
            "hvps": self.hvps,
            "backwards": self.backwards,
            "seconds": self.seconds,
            "exact": self.exact,
            "exact_products": self.exact_products,
        }

    @classmethod
    def from_state(cls, state: dict) -> RunningStats:
        """Inverse of :meth:`to_state`."""
        return cls(
            keys=[tuple(k) for k in state["keys"]],
            n=state["n"],
            mean=state["mean"],
            m2=state["m2"],
            hvps=state["hvps"],
            backwards=state["backwards"],
            seconds=state["seconds"],
            exact=state.get("exact", []),
            exact_products=state.get("exact_products", 0),
        )


def sample_generator(seed: int, family: str, index: int) -> torch.Generator:
    """The generator of sample ``index`` of a family: a function of its arguments only."""
    digest = hashlib.sha256(f"{seed}/{family}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def sample(
    family: Family,
    keys: list[Key],
    targets: dict[Key, Target],
    batches: list[Batch],
    k: int,
    generator: torch.Generator,
    exact: list[int] | None = None,
) -> list[float]:
    """One sample of every key: ``k`` batches drawn without replacement, draws rescaled.

    Keys with ``exact[i] > 0`` are left out of the draws (their value here is 0).
    """
    exact = exact or [0] * len(keys)
    n_batches = len(batches)
    only = {targets[key] for i, key in enumerate(keys) if exact[i] <= 0} if any(e > 0 for e in exact) else None
    chosen = range(n_batches) if k >= n_batches else torch.randperm(n_batches, generator=generator)[:k].tolist()
    totals: dict[Target, float] = {}
    for b in chosen:
        scale = n_batches / min(k, n_batches) * batches[b].weight
        draws = family.draw(batches[b], generator) if only is None else family.draw(batches[b], generator, only)
        for target, value in draws.items():
            totals[target] = totals.get(target, 0.0) + scale * value
    return [totals.get(targets[key], 0.0) for key in keys]


def run_family(
    family: Family,
    stats: RunningStats,
    targets: dict[Key, Target],
    batches: list[Batch],
    settings: ProbeSettings,
    after_sample: Callable[[RunningStats], None],
    sizes: dict[Key, int] | None = None,
    decided: Callable[[RunningStats], bool] | None = None,
) -> RunningStats:
    """Take samples until the stopping rule holds; call ``after_sample`` after each one.

    Args:
        family: The family to draw from.
        stats: Where to start (fresh, or loaded from a checkpoint); updated in place.
        targets: The trace target of each key.
        batches: The calibration batches.
        settings: Seed, batches per sample, the stopping rule and ``exact_max_params``.
        after_sample: Saves the checkpoint and reports progress; may raise to interrupt. Also
            called after exact traces are computed.
        sizes: Elements of each key's trace (``n_params``); None computes none exactly.
        decided: The ``decision`` rule's test (:mod:`mpq._probes.decision`): whether what the
            search decides is resolved by these statistics.

    Returns:
        ``stats``.
    """
    k = len(batches) if settings.batches_per_sample is None else settings.batches_per_sample
    while not stats.done(settings, decided):
        chosen = _worth_exact(stats, settings, sizes or {}, len(batches))
        if chosen:
            _exact_traces(family, stats, targets, batches, chosen, sizes or {})
            after_sample(stats)
            continue
        start, hvps, backwards = time.perf_counter(), family.hvps, family.backwards
        generator = sample_generator(settings.seed, family.name, stats.n)
        stats.update(sample(family, stats.keys, targets, batches, k, generator, stats.exact))
        stats.hvps += family.hvps - hvps
        stats.backwards += family.backwards - backwards
        stats.seconds += time.perf_counter() - start
        after_sample(stats)
    return stats


def _worth_exact(stats: RunningStats, settings: ProbeSettings, sizes: dict[Key, int], n_batches: int) -> list[int]:
    """The keys to switch to exact traces now: the choice with the fewest projected products.

    Candidates are the sampled keys within ``exact_max_params`` still above the tolerance,
    slowest first; switching the first ``j`` costs their elements times the batches in products
    and saves the samples by which the slowest remaining key's projected need falls. A pure
    function of ``stats``: a resumed run makes the same choice at the same point.
    """
    if stats.n < settings.min_samples or not sizes:
        return []
    sampled = stats.sampled()
    per_sample = (stats.hvps + stats.backwards - stats.exact_products) / stats.n

    def need(i: int) -> float:
        rel = stats.relative_stderr(i)
        if not rel < math.inf:
            return settings.max_samples
        return min(settings.max_samples, max(stats.n, stats.n * (rel / settings.tolerance) ** 2))

    needs = {i: need(i) for i in sampled}
    candidates = sorted(
        (
            i
            for i in sampled
            if stats.exact[i] == 0 and sizes[stats.keys[i]] <= settings.exact_max_params and needs[i] > stats.n
        ),
        key=lambda i: (-needs[i], i),
    )
    best, best_cost, exact_cost = 0, (max(needs.values()) - stats.n) * per_sample, 0
    for j, i in enumerate(candidates, start=1):
        exact_cost += sizes[stats.keys[i]] * n_batches
        switched = set(candidates[:j])
        rest = max((needs[r] for r in sampled if r not in switched), default=stats.n)
        cost = exact_cost + (rest - stats.n) * per_sample
        if cost < best_cost:
            best, best_cost = j, cost
    return candidates[:best]


def _exact_traces(
    family: Family,
    stats: RunningStats,
    targets: dict[Key, Target],
    batches: list[Batch],
    chosen: list[int],
    sizes: dict[Key, int],
) -> None:
    """Put the chosen keys' exact traces, ``sum_b n_b / N * trace_b``, in ``stats`` (-1: the family cannot)."""
    start, hvps, backwards = time.perf_counter(), family.hvps, family.backwards
    wanted = {targets[stats.keys[i]] for i in chosen}
    totals: dict[Target, float] = {}
    for batch in batches:
        values = family.exact(batch, wanted)
        wanted &= set(values)
        for target in wanted:
            totals[target] = totals.get(target, 0.0) + batch.weight * values[target]
    for i in chosen:
        key = stats.keys[i]
        if targets[key] in wanted:
            stats.exact[i], stats.mean[i], stats.m2[i] = sizes[key], totals[targets[key]], 0.0
        else:
            stats.exact[i] = -1
    stats.hvps += family.hvps - hvps
    stats.backwards += family.backwards - backwards
    stats.exact_products += family.hvps - hvps + family.backwards - backwards
    stats.seconds += time.perf_counter() - start
