"""Brute-force reference for the solvers' tests: enumerate every allocation of a small problem."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd

SUMMED = ("weight_bytes", "latency_s")
MAXED = ("sram_bytes",)


def enumerate_allocations(
    omega: pd.DataFrame,
    costs: pd.DataFrame,
    ties: list[list[str]] = (),
    fixed: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Every allocation over the pairs present in both tables that honours ties and pins.

    Returns:
        One row per allocation: one column per layer (its candidate), `loss`, and every cost
        column of `COLUMNS` (summed, or max for `MAXED`).
    """
    pairs = omega.merge(costs, on=["layer", "candidate"])
    layers = list(pd.unique(omega["layer"]))
    columns = ["loss", *(c for c in (*SUMMED, *MAXED) if c in costs.columns)]
    per_layer = [pairs[pairs["layer"] == layer].rename(columns={"omega": "loss"}) for layer in layers]
    combos = np.array(list(itertools.product(*(range(len(p)) for p in per_layer))), dtype=int)
    combos = combos.reshape(len(combos), len(layers))
    names = np.stack([p["candidate"].to_numpy(dtype=object)[combos[:, i]] for i, p in enumerate(per_layer)], axis=1)
    keep = np.ones(len(combos), dtype=bool)
    index = {layer: i for i, layer in enumerate(layers)}
    for group in ties:
        for a, b in zip(group, group[1:]):
            keep &= names[:, index[a]] == names[:, index[b]]
    for layer, candidate in (fixed or {}).items():
        keep &= names[:, index[layer]] == candidate
    result = pd.DataFrame(names[keep], columns=layers)
    for column in columns:
        values = np.stack([p[column].to_numpy(dtype=float)[combos[keep, i]] for i, p in enumerate(per_layer)], axis=1)
        result[column] = values.max(axis=1) if column in MAXED else values.sum(axis=1)
    return result


def meets(allocations: pd.DataFrame, budgets: Mapping[str, float]) -> pd.Series:
    """Mask of the allocations within every budget."""
    mask = pd.Series(True, index=allocations.index)
    for name, limit in budgets.items():
        mask &= allocations[name] <= limit
    return mask


def nondominated(values: np.ndarray) -> set[tuple[float, ...]]:
    """The distinct non-dominated rows of `values` (minimisation), as tuples."""
    points = np.unique(values, axis=0)
    keep = [not np.any(np.all(points <= p, axis=1) & np.any(points < p, axis=1)) for p in points]
    return {tuple(p) for p in points[keep]}


def random_tables(
    rng: np.random.Generator, n_layers: int, n_candidates: int, *, drop: float = 0.0, sizes: int = 63
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Seeded random tables with float values (for instances too big to enumerate).

    Layers have one of `sizes` parameter counts: few sizes repeat costs across layers, as the
    blocks of an LLM or the experts of an MoE do.
    """
    candidates = ["int2", "int3", "int4", "int6", "int8", "fp8", "fp6", "fp16"][:n_candidates]
    bits = np.array([2, 3, 4, 6, 8, 8, 6, 16])[:n_candidates]
    rows = []
    for i in range(n_layers):
        params = int(rng.integers(1, sizes + 1)) * 4096
        sensitivity = rng.lognormal(0, 1.5)
        for name, b in zip(candidates, bits):
            rows.append(
                (
                    f"block.{i}-fc",
                    name,
                    sensitivity * params * 2.0 ** (-2 * b) * rng.lognormal(0, 0.3),
                    params * b / 8,
                    params * max(b, 4) / 8 / 2e12 + 1e-6 * rng.random(),
                    float(params // 64 * (1 + b // 8)),
                )
            )
    frame = pd.DataFrame(rows, columns=["layer", "candidate", "omega", *SUMMED, *MAXED])
    if drop:
        keep = rng.random(len(frame)) >= drop
        keep[frame.groupby("layer").cumcount().to_numpy() == 0] = True
        frame = frame[keep]
    return frame[["layer", "candidate", "omega"]], frame[["layer", "candidate", *SUMMED, *MAXED]]
