"""Monte Carlo estimation of a trace family: seeded samples, running statistics, stopping rule.

A *sample* of a family takes every calibration batch (the default, stratified: the spread
between batches drops out) or ``batches_per_sample`` of them drawn uniformly without
replacement, and on each one random draw of every target at once (``family.draw``); scaled by
``n_batches / k * n_b / N`` the draws sum to an unbiased estimate of every target's trace over
the whole calibration loss. The estimate is the mean over samples, its standard error the
sample standard deviation over ``sqrt(n)``: it covers the probe vectors' noise *and* any batch
sub-sampling, so a 5 % tolerance means 5 % of the full-calibration trace.

Sample ``i`` draws all its randomness from a generator seeded by ``(seed, family, i)``, and the
running sums are updated in sample order: a run resumed from a checkpoint after any sample
gives the same numbers, bit for bit, as one that never stopped.
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

    def draw(self, batch: Batch, generator: torch.Generator) -> dict[Target, float]:
        """One unbiased draw of every target's trace of ``batch``'s loss."""


@dataclass
class RunningStats:
    """Running mean and sum of squared deviations (Welford) of every key's samples.

    Attributes:
        keys: (probe, layer) per estimate.
        n: Samples taken.
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

    def __post_init__(self) -> None:
        zeros = [0.0] * len(self.keys)
        self.mean = self.mean or list(zeros)
        self.m2 = self.m2 or list(zeros)

    def update(self, sample: list[float]) -> None:
        """Add one sample (one value per key)."""
        self.n += 1
        for i, x in enumerate(sample):
            delta = x - self.mean[i]
            self.mean[i] += delta / self.n
            self.m2[i] += delta * (x - self.mean[i])

    def stderr(self, i: int) -> float:
        """Standard error of key ``i``'s estimate (NaN below two samples)."""
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
        """The largest relative standard error and its key."""
        if self.n < 2 or not self.keys:
            return math.inf, None
        rel = [self.relative_stderr(i) for i in range(len(self.keys))]
        i = max(range(len(rel)), key=rel.__getitem__)
        return rel[i], self.keys[i]

    def unconverged(self, tolerance: float) -> list[Key]:
        """Keys whose relative standard error is above the tolerance."""
        return [k for i, k in enumerate(self.keys) if not self.relative_stderr(i) <= tolerance]

    def done(self, settings: ProbeSettings) -> bool:
        """Whether the stopping rule holds: the sample cap, or converged after the minimum."""
        if self.n >= settings.max_samples:
            return True
        return self.n >= settings.min_samples and not self.unconverged(settings.tolerance)

    def to_state(self) -> dict:
        """A JSON-serialisable dict (floats round-trip exactly through JSON)."""
        return {
            "keys": [list(k) for k in self.keys], "n": self.n, "mean": self.mean, "m2": self.m2,
            "hvps": self.hvps, "backwards": self.backwards, "seconds": self.seconds,
        }

    @classmethod
    def from_state(cls, state: dict) -> RunningStats:
        """Inverse of :meth:`to_state`."""
        return cls(
            keys=[tuple(k) for k in state["keys"]], n=state["n"], mean=state["mean"], m2=state["m2"],
            hvps=state["hvps"], backwards=state["backwards"], seconds=state["seconds"],
        )


def sample_generator(seed: int, family: str, index: int) -> torch.Generator:
    """The generator of sample ``index`` of a family: a function of its arguments only."""
    digest = hashlib.sha256(f"{seed}/{family}/{index}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def sample(family: Family, keys: list[Key], targets: dict[Key, Target], batches: list[Batch], k: int,
           generator: torch.Generator) -> list[float]:
    """One sample of every key: ``k`` batches drawn without replacement, draws rescaled."""
    n_batches = len(batches)
    chosen = range(n_batches) if k >= n_batches else torch.randperm(n_batches, generator=generator)[:k].tolist()
    totals: dict[Target, float] = {}
    for b in chosen:
        scale = n_batches / min(k, n_batches) * batches[b].weight
        for target, value in family.draw(batches[b], generator).items():
            totals[target] = totals.get(target, 0.0) + scale * value
    return [totals.get(targets[key], 0.0) for key in keys]


def run_family(
    family: Family,
    stats: RunningStats,
    targets: dict[Key, Target],
    batches: list[Batch],
    settings: ProbeSettings,
    after_sample: Callable[[RunningStats], None],
) -> RunningStats:
    """Take samples until the stopping rule holds; call ``after_sample`` after each one.

    Args:
        family: The family to draw from.
        stats: Where to start (fresh, or loaded from a checkpoint); updated in place.
        targets: The trace target of each key.
        batches: The calibration batches.
        settings: Seed, batches per sample and the stopping rule.
        after_sample: Saves the checkpoint and reports progress; may raise to interrupt.

    Returns:
        ``stats``.
    """
    k = len(batches) if settings.batches_per_sample is None else settings.batches_per_sample
    while not stats.done(settings):
        start, hvps, backwards = time.perf_counter(), family.hvps, family.backwards
        generator = sample_generator(settings.seed, family.name, stats.n)
        stats.update(sample(family, stats.keys, targets, batches, k, generator))
        stats.hvps += family.hvps - hvps
        stats.backwards += family.backwards - backwards
        stats.seconds += time.perf_counter() - start
        after_sample(stats)
    return stats
